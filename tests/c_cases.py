"""Randomized int8 streaming models of every layer kind for the C firmware tests (shared by tests and CI)."""
import numpy as np

from test_int8_exact import make_case


def stream_cases(n, *, T, seed_base=7007):
    """n (model, frames (T, F)) pairs: unidirectional random stacks (LSTM with peephole / projection,
    GRU both variants, RNN tanh / relu, Dense with every activation), 35% with perturbed quantization."""
    out = []
    for case in range(n):
        spec, quant, model, X, *_ = make_case(case, max_T=2, seed_base=seed_base, allow_bidir=False)
        rng = np.random.default_rng([seed_base, case, 1])
        scale = float(np.abs(X).max() or 1.0)
        frames = (scale * rng.standard_normal((T, spec.input_size))).astype(np.float32)
        out.append((model, frames))
    return out
