"""What a benchmark measures: random sweep models, model files, the frames fed to them, MACs per step."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeLSTMError, InputError

SWEEP_KINDS = ("lstm", "gru", "rnn")
EXTRA_KINDS = ("frontend",)    # sweep kinds beyond the default sweep: named with --kinds
# "frontend": a conv front end of silero-vad's size on 576 audio samples per step (reflect pad, an STFT as a conv,
# magnitude, four conv + relu), then LSTM(128), relu, Dense(1, sigmoid): ~550k front-end MACs per step
FRONT_END_LAYERS = [
    {"kind": "pad", "left": 0, "right": 64, "mode": "reflect"},
    {"kind": "conv1d", "out_channels": 258, "kernel_size": 256, "stride": 128},
    {"kind": "magnitude", "length": 4},
    {"kind": "conv1d", "in_channels": 129, "out_channels": 128, "kernel_size": 3, "pad_left": 1, "pad_right": 1,
     "activation": "relu"},
    {"kind": "conv1d", "in_channels": 128, "out_channels": 64, "kernel_size": 3, "stride": 2, "pad_left": 1,
     "pad_right": 1, "activation": "relu"},
    {"kind": "conv1d", "in_channels": 64, "out_channels": 64, "kernel_size": 3, "stride": 2, "pad_left": 1,
     "pad_right": 1, "activation": "relu"},
    {"kind": "conv1d", "in_channels": 64, "out_channels": 128, "kernel_size": 3, "pad_left": 1, "pad_right": 1,
     "activation": "relu"},
    {"kind": "lstm", "hidden_size": 128}, {"kind": "activation", "activation": "relu"},
    {"kind": "dense", "output_size": 1, "activation": "sigmoid"}]
FRONT_END_INPUT = 576
SWEEP_INPUT_SIZES = (40, 64)
SWEEP_HIDDEN_SIZES = (32, 64, 128, 256)
HEAD_SIZE = 8              # sweep models end in Dense(8, sigmoid), like a small tagger


@dataclass
class Case:
    """One model to measure: its float and int8 forms, frames to feed, and an optional PyTorch twin."""
    name: str
    kind: str
    input_size: int
    hidden_size: int | None
    float_model: object | None      # edgelstm.Model (float32) or None for an int8-only file
    int8_model: object | None       # edgelstm.Model (int8)
    frames: np.ndarray              # (T, F) float32 random walk in the calibration range
    torch_twin: object | None = None


def walk(T: int, F: int, seed: int) -> np.ndarray:
    """A bounded random walk: slow, correlated frames like features, that exercise the whole int8 range."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal((T, F)) * 0.3, axis=0).clip(-3, 3).astype(np.float32)


def head_spec(kind: str, I: int, H: int, *, seed: int):
    """A random ModelSpec: one ``kind`` layer of H units on I features + Dense(8, sigmoid)."""
    import edgelstm as el
    return el.random_model([{"kind": kind, "hidden_size": H},
                            {"kind": "dense", "output_size": HEAD_SIZE, "activation": "sigmoid"}],
                           input_size=I, seed=seed)


def torch_stack(kind: str, I: int, H: int, seed: int):
    """nn.Sequential(nn.LSTM/GRU/RNN(I, H), Linear(H, 8), Sigmoid) after ``torch.manual_seed(seed)``."""
    import torch
    torch.manual_seed(seed)
    rec = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](I, H, batch_first=True)
    return torch.nn.Sequential(rec, torch.nn.Linear(H, HEAD_SIZE), torch.nn.Sigmoid()).eval()


def macs_per_step(spec) -> int:
    """Weight-matrix multiply-accumulates per time step (all directions and layers)."""
    total = 0
    for layer in spec.layers:
        if layer.kind == "ops":     # an op graph: each FULLY_CONNECTED weight is used once per step
            total += layer.n_w
            continue
        if layer.kind == "conv1d":  # every weight once per output position
            total += layer.out_length * int(np.prod(layer.param_shapes()["w"]))
            continue
        n_dir = 2 if layer.bidirectional else 1
        for name, shape in layer.param_shapes().items():
            if len(shape) == 2 and name != "w_peep":
                total += n_dir * shape[0] * shape[1]
    return total


def sweep_cases(*, kinds=SWEEP_KINDS, input_sizes=SWEEP_INPUT_SIZES, hidden_sizes=SWEEP_HIDDEN_SIZES,
                T: int = 1000, seed: int = 0) -> list[Case]:
    """Random models (recurrent layer + Dense(8, sigmoid)); built in PyTorch when it is installed, so the
    PyTorch peers run the very same weights."""
    import edgelstm as el
    try:
        import torch  # noqa: F401
        from ..export import from_torch
    except ImportError:
        from_torch = None
    cases = []
    for kind in kinds:
        if kind not in SWEEP_KINDS + EXTRA_KINDS:
            raise InputError(f"bench: kind must be one of {SWEEP_KINDS + EXTRA_KINDS}, got {kind!r}")
        if kind == "frontend":
            cases.append(front_end_case(T=T, seed=seed))
            continue
        for I in input_sizes:
            for H in hidden_sizes:
                if from_torch is not None:
                    twin = torch_stack(kind, I, H, seed)
                    fm = from_torch(twin)
                else:
                    twin = None
                    fm = el.Model(head_spec(kind, I, H, seed=seed))
                frames = walk(T, I, seed + H)
                qm = el.quantize(fm, calibration=frames[None], progress=False)
                cases.append(Case(f"{kind} I={I} H={H}", kind, I, H, fm, qm, frames, twin))
    return cases


def file_case(path, *, T: int = 1000, seed: int = 0) -> Case:
    """A model file (.elstm, or anything ``edgelstm convert`` reads).  A float model is also quantized (on a
    random walk, for timing only); an int8 model's float weights, when it carries them, give the f32 rows."""
    import edgelstm as el
    p = Path(path)
    if not p.is_file():
        raise InputError(f"bench: model file not found: {p}")
    if p.suffix == ".elstm":
        model = el.load(p)
    else:
        from ..export import import_model
        model = import_model(p)
    frames = walk(T, model.input_size, seed)
    if model.is_quantized:
        fm = el.Model(model.spec) if model.spec.has_weights else None
        qm = model
    else:
        fm = model
        try:
            qm = el.quantize(model, calibration=frames[None], progress=False)
        except EdgeLSTMError:       # e.g. a float op graph, which edgelstm does not quantize: f32 rows only
            qm = None
    rec = [layer for layer in model.spec.layers if layer.kind != "dense"]
    kind = "+".join(layer.kind for layer in model.spec.layers)
    return Case(p.name, kind, model.input_size, getattr(rec[0], "hidden_size", None) if rec else None, fm, qm,
                frames)


def front_end_case(*, T: int = 1000, seed: int = 0) -> Case:
    """The silero-size conv front end + LSTM(128) (FRONT_END_LAYERS) on audio-like frames: noise bursts of random
    level, 576 samples per step."""
    import edgelstm as el
    rng = np.random.default_rng(seed)
    spec = el.random_model(FRONT_END_LAYERS, input_size=FRONT_END_INPUT, seed=seed)
    level = np.repeat(rng.uniform(0.001, 0.3, T // 20 + 1), 20)[:T, None]
    frames = (rng.standard_normal((T, FRONT_END_INPUT)) * level).astype(np.float32)
    fm = el.Model(spec)
    qm = el.quantize(fm, calibration=frames[None], progress=False)
    return Case("silero-size front end + LSTM 128", "frontend", FRONT_END_INPUT, 128, fm, qm, frames)
