"""Randomized int8 streaming models of every layer kind for the C firmware tests (shared by tests and CI)."""
import functools
from pathlib import Path

import numpy as np

from test_int8_exact import make_case

DATA = Path(__file__).resolve().parents[1] / "edgelstm" / "data"


def stream_cases(n, *, T, seed_base=7007):
    """n (model, frames (T, F)) pairs: unidirectional random stacks (LSTM with peephole / projection,
    GRU both variants, RNN tanh / relu, Dense with every activation), 35% with perturbed quantization.
    int8 GRU / RNN layers run as their int16 op graphs (edgelstm/program/cellgraph.py: CONV16, ACT16 and the int16
    ADD / SUB / MUL / QUANTIZE records). A perturbed quantization that prepare() refuses (ModelError: e.g. an
    int16 conv scale needing a shift outside LiteRT's [-31, 7]) is no model to run anywhere: that case number
    is passed over and the next one taken."""
    from edgelstm.errors import ModelError
    out, case = [], 0
    while len(out) < n:
        if case >= 2 * n + 10:
            raise AssertionError(f"stream_cases: prepare() refused {case - len(out)} of {case} random models")
        try:
            spec, quant, model, X, *_ = make_case(case, max_T=2, seed_base=seed_base, allow_bidir=False)
        except ModelError:
            case += 1
            continue
        rng = np.random.default_rng([seed_base, case, 1])
        scale = float(np.abs(X).max() or 1.0)
        frames = (scale * rng.standard_normal((T, spec.input_size))).astype(np.float32)
        out.append((model, frames))
        case += 1
    return out


def layer_variants(cases) -> set:
    """The (kind, variant) pairs a list of cases covers: ("gru", reset_after), ("rnn", nonlinearity), ..."""
    out = set()
    for m, _ in cases:
        for layer in m.spec.layers:
            if layer.kind == "gru":
                out.add(("gru", bool(layer.reset_after)))
            elif layer.kind == "rnn":
                out.add(("rnn", layer.nonlinearity))
            else:
                out.add((layer.kind, None))
    return out


ALL_RECURRENT_VARIANTS = {("gru", True), ("gru", False), ("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)}


@functools.lru_cache(maxsize=1)
def gru_tagger():
    """The bundled GRU tagger (edgelstm/data/tagger_gru.elstm) quantized with the bundled calibration frames:
    an int8 GRU I=40 H=64 + Dense 4 on the current int8 scheme (quantized here, as the LSTM tagger is, rather
    than read from tagger_gru_int8.elstm, so the tests follow the scheme of the code under test)."""
    import edgelstm as el
    return el.quantize(el.load(DATA / "tagger_gru.elstm"), calibration=np.load(DATA / "calibration.npy"),
                       progress=False)
