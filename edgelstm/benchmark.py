"""``edgelstm bench``: per-step latency of edgelstm side by side with its peers, measured in one process.

    from edgelstm.benchmark import run_bench, write_report
    result = run_bench(sweep=True, quick=True)          # or run_bench(model_path="tagger.elstm")
    write_report(result, "bench-out")                   # bench.json, bench.md, two PNG plots

Every row is one (runtime, API) pair on one model, timed single-threaded:

  edgelstm int8 / f32   step (one frame), step_many (T frames in one call, per step), streams (N independent
                        streams stepped by one call, per stream-step), run (a (T, F) sequence, per step) and
                        run_batch (a (N, T, F) batch, per stream-step)
  LiteRT int8 / f32     our model exported with ``to_tflite``: the full streaming step from Python (set the frame
                        and the state inputs, invoke, read the outputs, feed the state back; with a sequence
                        export the state stays in the op's variable tensors) and the fused sequence per step
  onnxruntime f32       our model exported with ``to_onnx(streaming=True)``: step with state fed back, sequence
  PyTorch f32           eager nn.*Cell + Linear per step (state fed back), and nn.LSTM/GRU/RNN over T per step
  PyTorch dyn-int8      ``quantize_dynamic`` nn.LSTM/GRU (PyTorch has no dynamic-int8 nn.RNN): step, sequence

Step-like rows are medians and p99 of individually timed calls (the ~50 ns timer overhead included, as a user's
loop would see it); sequence rows are the call time divided by T, over repeated calls.  Before timing, each peer's
output is compared with ours on the same frames (int8 LiteRT: identical integers; float peers: within 1e-4) and
the row says whether it agreed.  A peer that is not installed, or that cannot express a model, is listed under
``skipped`` with the reason; it never fails the run.

GMAC/s counts one multiply-accumulate per weight-matrix element per step (input, recurrent, projection and
Dense matrices; peepholes and biases excluded).  The int8 peak is derived, not measured: see ``int8_peak``.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._progress import Progress
from .errors import EdgeLSTMError, InputError

SWEEP_KINDS = ("lstm", "gru", "rnn")
SWEEP_INPUT_SIZES = (40, 64)
SWEEP_HIDDEN_SIZES = (32, 64, 128, 256)
HEAD_SIZE = 8              # sweep models end in Dense(8, sigmoid), like a small tagger
PEERS = ("litert", "onnxruntime", "torch")
AGREE_ATOL = 1e-4          # float peers: float32 rounding over a few hundred steps stays far below this


@dataclass(frozen=True)
class Budget:
    calls: int      # individually timed calls per step-like row
    repeats: int    # timed calls per sequence row
    T: int          # frames per sequence call
    streams: int    # N for the N-stream and batched rows


FULL = Budget(calls=20000, repeats=7, T=1000, streams=16)
QUICK = Budget(calls=1500, repeats=3, T=200, streams=16)


class Skip(Exception):
    """A peer that cannot run here (not installed, or the model is outside what its format expresses)."""


# --------------------------------------------------------------------------------------------- machine
def _cpuinfo() -> dict:
    info = {"model": platform.processor() or platform.machine(), "flags": set(), "mhz": None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "model name" and info["model"] in ("", platform.machine()):
                info["model"] = val.strip()
            elif key in ("flags", "Features") and not info["flags"]:
                info["flags"] = set(val.split())
            elif key == "cpu MHz" and info["mhz"] is None:
                info["mhz"] = float(val)
    except OSError:
        pass
    try:  # the rated maximum when the kernel exposes it (cpu MHz is the current, often throttled, clock)
        info["mhz"] = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    return info


def int8_peak(cpu: dict | None = None) -> dict:
    """One core's int16 multiply-accumulate peak (our int8 kernels widen to int16 and use pairwise 16-bit
    multiply-adds): MACs per instruction x instructions per cycle x clock.

    x86 with AVX2 (vpmaddwd / vpdpwssd on 256 bits): 16 MACs per instruction, 2 per cycle (two vector
    multiply pipes on Zen 3/4 and Intel since Skylake); AVX-512 parts are counted the same, since Zen 4 splits
    512-bit ops in two and our kernels need only 256 bits.  AArch64 NEON (smlal/smlal2 on 16-bit lanes): 4 MACs
    per instruction, 2 per cycle (Cortex-A72/A76).  Pass ``peak_gmacs`` to ``run_bench`` to override."""
    cpu = cpu or _cpuinfo()
    mhz = cpu.get("mhz")
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and "avx2" in cpu["flags"]:
        macs, per_cycle, how = 16, 2, "AVX2 vpmaddwd: 16 int16 MACs x 2/cycle"
    elif machine in ("aarch64", "arm64"):
        macs, per_cycle, how = 4, 2, "NEON smlal: 4 int16 MACs x 2/cycle"
    elif machine in ("x86_64", "amd64"):
        macs, per_cycle, how = 8, 1, "SSE2 pmaddwd: 8 int16 MACs x 1/cycle"
    else:
        return {"gmacs": None, "derivation": f"unknown vector unit on {machine}"}
    if not mhz:
        return {"gmacs": None, "derivation": how + ", clock unknown"}
    return {"gmacs": macs * per_cycle * mhz / 1000.0, "derivation": f"{how} x {mhz:.0f} MHz"}


def machine_info() -> dict:
    cpu = _cpuinfo()
    info = {"cpu": cpu["model"], "mhz": cpu["mhz"], "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    for mod in ("numba", "ai_edge_litert", "tflite_runtime", "onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional peer; absent or broken both mean "not measured"
            info[mod] = None
    from . import __version__
    info["edgelstm"] = __version__
    return info


# ---------------------------------------------------------------------------------------------- timing
def time_calls(fn, inputs, n: int) -> np.ndarray:
    """n individually timed calls ``fn(inputs[k % len(inputs)])`` -> ns per call."""
    clock = time.perf_counter_ns
    out = np.empty(n, np.int64)
    k = len(inputs)
    for i in range(n):
        x = inputs[i % k]
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out


def time_repeats(fn, repeats: int) -> np.ndarray:
    """``repeats`` timed calls of ``fn()`` -> ns per call."""
    clock = time.perf_counter_ns
    out = np.empty(repeats, np.int64)
    for i in range(repeats):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def macs_per_step(spec) -> int:
    """Weight-matrix multiply-accumulates per time step (all directions and layers)."""
    total = 0
    for layer in spec.layers:
        if layer.kind == "ops":     # an op graph: each FULLY_CONNECTED weight is used once per step
            total += layer.n_w
            continue
        n_dir = 2 if layer.bidirectional else 1
        for name, shape in layer.param_shapes().items():
            if len(shape) == 2 and name != "w_peep":
                total += n_dir * shape[0] * shape[1]
    return total


# ---------------------------------------------------------------------------------------------- models
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


def _walk(T: int, F: int, seed: int) -> np.ndarray:
    """A bounded random walk: slow, correlated frames like features, that exercise the whole int8 range."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal((T, F)) * 0.3, axis=0).clip(-3, 3).astype(np.float32)


def _torch_stack(kind: str, I: int, H: int, seed: int):
    import torch
    torch.manual_seed(seed)
    rec = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](I, H, batch_first=True)
    return torch.nn.Sequential(rec, torch.nn.Linear(H, HEAD_SIZE), torch.nn.Sigmoid()).eval()


class _Recurrent:
    """nn.Sequential(rec, Linear, Sigmoid) forward that keeps the recurrent module's tuple output apart."""

    def __init__(self, seq):
        self.rec, self.lin, self.act = seq[0], seq[1], seq[2]

    def __call__(self, x, state):
        y, state = self.rec(x, state)
        return self.act(self.lin(y)), state


def sweep_cases(*, kinds=SWEEP_KINDS, input_sizes=SWEEP_INPUT_SIZES, hidden_sizes=SWEEP_HIDDEN_SIZES,
                T: int = 1000, seed: int = 0) -> list[Case]:
    """Random models (recurrent layer + Dense(8, sigmoid)); built in PyTorch when it is installed, so the
    PyTorch peers run the very same weights."""
    import edgelstm as el
    try:
        import torch  # noqa: F401
        from .export import from_torch
    except ImportError:
        from_torch = None
    cases = []
    for kind in kinds:
        if kind not in SWEEP_KINDS:
            raise InputError(f"bench: kind must be one of {SWEEP_KINDS}, got {kind!r}")
        for I in input_sizes:
            for H in hidden_sizes:
                if from_torch is not None:
                    twin = _torch_stack(kind, I, H, seed)
                    fm = from_torch(twin)
                else:
                    twin = None
                    fm = el.Model(el.random_model([{"kind": kind, "hidden_size": H},
                                                   {"kind": "dense", "output_size": HEAD_SIZE,
                                                    "activation": "sigmoid"}], input_size=I, seed=seed))
                frames = _walk(T, I, seed + H)
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
        from .export import import_model
        model = import_model(p)
    frames = _walk(T, model.input_size, seed)
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


# ---------------------------------------------------------------------------------------------- engines
# Each engine returns (label, api, unit, per-call callable, inputs or None, steps per call, agrees).
def _ours(model, frames, budget: Budget, dtype: str):
    """edgelstm rows for one model form."""
    T, F = frames.shape
    N = budget.streams
    rt = f"edgelstm {dtype}"
    s = model.stream()
    yield rt, "step", s.step, list(frames[:256]), 1, None
    s2 = model.stream()
    yield rt, "step_many", (lambda: s2.step_many(frames)), None, T, None
    rng = np.random.default_rng(1)
    Xn = np.ascontiguousarray(frames[rng.integers(0, T, (256, N))])         # (256, N, F): N streams' frames
    streams = model.streams(N)
    yield rt, f"streams(N={N})", streams.step, list(Xn), N, None
    yield rt, "run", (lambda: model.run(frames)), None, T, None
    batch = np.ascontiguousarray(np.stack([np.roll(frames, k, axis=0) for k in range(N)]))
    yield rt, f"run_batch(B={N})", (lambda: model.run(batch)), None, T * N, None


def _litert_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise Skip("LiteRT not installed (pip install 'edgelstm[tflite]')") from e
    return Interpreter


def _litert(model, frames, budget: Budget, dtype: str, tmp: Path):
    """LiteRT rows on our own exports: the step file (``mode="step"``: frame and state in, output and state out,
    bound by signature name) when ``to_tflite`` can write it, else the sequence file invoked one frame at a time
    (its state stays in the op's variable tensors); then the fused sequence over T frames."""
    Interpreter = _litert_interpreter()
    from .export import to_tflite
    T, F = frames.shape
    rt = f"LiteRT {dtype}"
    refused = {}
    cells = any(layer.kind in ("gru", "rnn", "ops") for layer in model.spec.layers)
    for mode in ("step", "sequence"):
        try:   # a GRU / RNN sequence file is its step graph unrolled over the T frames
            to_tflite(model, tmp / f"{mode}_{dtype}.tflite", mode=mode,
                      frames=T if mode == "sequence" and cells else None)
        except EdgeLSTMError as e:
            refused[mode] = str(e)
    if len(refused) == 2:
        raise Skip(refused["step"])
    if model.is_quantized:
        s_in, zp_in = model.quant.act[0]
        xq = np.clip(np.round(frames / np.float32(s_in)) + zp_in, -128, 127).astype(np.int8)
        ours_frames = ((xq.astype(np.float32) - zp_in) * np.float32(s_in)).astype(np.float32)
    else:
        xq = ours_frames = frames
    reference = model.stream().step_many(ours_frames[:200])

    if "step" not in refused:
        it = Interpreter(model_path=str(tmp / f"step_{dtype}.tflite"), num_threads=1)
        it.allocate_tensors()
        sig = it._get_full_signature_list()["serving_default"]   # {"inputs": {name: tensor}, "outputs": ...}
        ins, outs = dict(sig["inputs"]), dict(sig["outputs"])
        xi, yi = ins.pop("x"), outs.pop("y")
        details = {d["index"]: d for d in it.get_input_details()}
        lr_step = _fed_back_step(it, xi, yi, [(details[ins[n]], outs[n]) for n in ins])
        xshape = tuple(details[xi]["shape"])
        api = "full step (state in/out)"
    else:
        it = Interpreter(model_path=str(tmp / f"sequence_{dtype}.tflite"), num_threads=1)
        d = it.get_input_details()[0]
        it.resize_tensor_input(d["index"], [1, 1, F])
        it.allocate_tensors()
        xi, yi = d["index"], it.get_output_details()[0]["index"]
        xshape = (1, 1, F)

        def lr_step(x):
            it.set_tensor(xi, x)
            it.invoke()
            return it.get_tensor(yi)
        api = "full step (state in variable tensors)"
    step_inputs = [np.ascontiguousarray(x.reshape(xshape)) for x in xq[:256]]
    got = np.array([np.array(lr_step(x)).reshape(-1) for x in step_inputs[:200]])
    yield rt, api, lr_step, step_inputs, 1, _agree(model, reference, got)

    if "sequence" in refused:
        raise Skip(f"sequence: {refused['sequence']}")
    seq = Interpreter(model_path=str(tmp / f"sequence_{dtype}.tflite"), num_threads=1)
    d, *state_inputs = seq.get_input_details()
    seq.resize_tensor_input(d["index"], [1, T, F])
    seq.allocate_tensors()
    for s_d in state_inputs:     # an unrolled file's start state (real 0: each tensor's zero point)
        seq.set_tensor(s_d["index"], np.full(s_d["shape"], s_d["quantization"][1], s_d["dtype"]))
    si, so = d["index"], seq.get_output_details()[0]["index"]
    x_seq = np.ascontiguousarray(xq[None])

    def lr_seq():
        seq.set_tensor(si, x_seq)
        seq.invoke()
        return seq.get_tensor(so)
    seq.reset_all_variables()
    yield rt, "sequence", lr_seq, None, T, _agree(model, reference, lr_seq()[0, :200])


def _fed_back_step(it, x_index: int, y_index: int, state_pairs):
    """LiteRT's full streaming step as an app runs it: set the frame and every state input, invoke, keep every
    state output for the next call. ``state_pairs``: (input tensor details, output tensor index). The zero
    state is real 0, so each quantized state tensor starts at its own zero point."""
    pairs = [(d["index"], o) for d, o in state_pairs]
    bufs = {d["index"]: np.full(d["shape"], d["quantization"][1], d["dtype"]) for d, _ in state_pairs}

    def step(x):
        it.set_tensor(x_index, x)
        for i_idx, _ in pairs:
            it.set_tensor(i_idx, bufs[i_idx])
        it.invoke()
        for i_idx, o_idx in pairs:
            bufs[i_idx] = it.get_tensor(o_idx)
        return it.get_tensor(y_index)
    return step


def _litert_file(path: Path, frames: np.ndarray, hidden_size: int | None, n_states: int):
    """LiteRT's full streaming step on a user's own .tflite step model (e.g. converter-made), timed beside ours.
    Its first input is the frame; every other input is a state, fed back from the output of the same shape (in
    order). Timed only beside a case of the same shapes (frame size I, n_states states of hidden_size elements), so
    its ratio to our step compares like with like; it is a different model, so no outputs are compared."""
    Interpreter = _litert_interpreter()
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    F = frames.shape[1]
    frame_in = [d for d in ins if int(np.prod(d["shape"])) == F]
    if len(frame_in) != 1:
        raise Skip(f"{path.name}: no single input of {F} features (inputs: {[list(d['shape']) for d in ins]})")
    x_in = frame_in[0]
    state_in = [d for d in ins if d is not x_in]
    sizes = sorted({int(np.prod(d["shape"])) for d in state_in})
    if hidden_size is None or sizes != [hidden_size]:
        raise Skip(f"{path.name}: its state sizes {sizes} are not this model's hidden size {hidden_size}")
    if len(state_in) != n_states:
        raise Skip(f"{path.name}: {len(state_in)} state inputs, this model's cell has {n_states}")
    free = list(outs)
    pairs = []
    for d in state_in:
        match = next((o for o in free if list(o["shape"]) == list(d["shape"])), None)
        if match is None:
            raise Skip(f"{path.name}: no output has the shape of state input {d['name']} {list(d['shape'])}")
        free.remove(match)
        pairs.append((d, match["index"]))
    scale, zp = x_in["quantization"]
    if x_in["dtype"] == np.int8 and scale:
        xs = np.clip(np.round(frames / scale) + zp, -128, 127).astype(np.int8)
    else:
        xs = frames.astype(x_in["dtype"])
    inputs = [np.ascontiguousarray(x.reshape(x_in["shape"])) for x in xs[:256]]
    step = _fed_back_step(it, x_in["index"], free[0]["index"] if free else outs[0]["index"], pairs)
    dtype = "int8" if any(d["dtype"] == np.int8 for d in it.get_tensor_details()) else "f32"
    yield f"LiteRT {dtype} ({path.name})", "full step (state in/out)", step, inputs, 1, None


def _agree(model, reference: np.ndarray, got: np.ndarray) -> bool:
    """int8: the peer's integers equal ours exactly; float: within AGREE_ATOL."""
    got = np.asarray(got).reshape(reference.shape)
    if model.is_quantized:
        s_out, zp_out = model.quant.act[-1]
        ours = np.round(reference / np.float32(s_out)).astype(np.int64) + zp_out
        return bool(np.array_equal(ours, got.astype(np.int64)))
    return bool(np.abs(reference - got).max() <= AGREE_ATOL)


def _onnxruntime(model, frames, budget: Budget, tmp: Path):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise Skip("onnxruntime not installed (pip install 'edgelstm[onnx]')") from e
    from .export import to_onnx
    T, F = frames.shape
    path = tmp / "m.onnx"
    try:
        to_onnx(model, path, streaming=True)
    except EdgeLSTMError as e:
        raise Skip(str(e)) from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    x_name, y_name = inputs[0].name, outputs[0].name
    state_in = [i.name for i in inputs[1:]]
    state_out = [o.name for o in outputs[1:]]
    feed = {n: np.zeros([1 if not isinstance(d, int) else d for d in i.shape], np.float32)
            for n, i in zip(state_in, inputs[1:])}
    out_names = [y_name] + state_out

    def ort_step(x):
        feed[x_name] = x
        res = sess.run(out_names, feed)
        for n, v in zip(state_in, res[1:]):
            feed[n] = v
        return res[0]

    reference = model.stream().step_many(frames[:200])
    step_inputs = [np.ascontiguousarray(x.reshape(1, 1, F)) for x in frames[:256]]
    got = np.array([ort_step(x).reshape(-1) for x in step_inputs[:200]])
    for n in state_in:
        feed[n][...] = 0
    yield "onnxruntime f32", "full step (state in/out)", ort_step, step_inputs, 1, _agree(model, reference, got)
    x_seq = frames[None]
    zeros = {n: np.zeros_like(v) for n, v in feed.items() if n != x_name}

    def ort_seq():
        return sess.run([y_name], {x_name: x_seq, **zeros})[0]
    yield "onnxruntime f32", "sequence", ort_seq, None, T, _agree(model, reference, ort_seq()[0, :200])


def _torch(case: Case, budget: Budget):
    if case.torch_twin is None:
        raise Skip("no PyTorch twin (PyTorch not installed, or the model came from a file)")
    import torch
    torch.set_num_threads(1)
    seq = case.torch_twin
    rec, lin = seq[0], seq[1]
    kind, H, T, F = case.kind, case.hidden_size, *case.frames.shape
    cell_cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind]
    cell = cell_cls(F, H).eval()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, n).copy_(getattr(rec, n + "_l0"))
    zero = torch.zeros(1, H)
    state = [(zero, zero.clone()) if kind == "lstm" else zero]

    def cell_step(x):
        with torch.no_grad():
            state[0] = st = cell(x, state[0])
            h = st[0] if kind == "lstm" else st
            return torch.sigmoid(lin(h))

    frames = torch.from_numpy(case.frames)
    reference = case.float_model.stream().step_many(case.frames[:200])
    step_inputs = [frames[k:k + 1] for k in range(min(256, T))]
    got = np.array([cell_step(x).numpy().reshape(-1) for x in step_inputs[:200]])
    state[0] = (zero, zero.clone()) if kind == "lstm" else zero
    yield "PyTorch f32", "cell step (state in/out)", cell_step, step_inputs, 1, \
        _agree(case.float_model, reference, got)
    x_seq = frames[None]

    whole = _Recurrent(seq)

    def seq_run():
        with torch.no_grad():
            return whole(x_seq, None)[0]
    yield "PyTorch f32", "sequence", seq_run, None, T, \
        _agree(case.float_model, reference, seq_run()[0, :200].numpy())

    if kind == "rnn":
        raise Skip("PyTorch dynamic int8 has no nn.RNN")
    with warnings.catch_warnings():  # torch.ao deprecation notices: still PyTorch 2.13's dynamic int8
        warnings.simplefilter("ignore")
        dq = _Recurrent(torch.ao.quantization.quantize_dynamic(
            seq, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8))
    dstate = [None]

    def dq_step(x):
        with torch.no_grad():
            y, dstate[0] = dq(x, dstate[0])
            return y
    step3 = [frames[k:k + 1][None] for k in range(min(256, T))]
    yield "PyTorch dyn-int8", "module step (state in/out)", dq_step, step3, 1, None

    def dq_seq():
        with torch.no_grad():
            return dq(x_seq, None)[0]
    yield "PyTorch dyn-int8", "sequence", dq_seq, None, T, None


# ----------------------------------------------------------------------------------------------- runner
def _engines(case: Case, budget: Budget, tmp: Path, tflite_files=()):
    """(peer key as in ``PEERS``, label, generator of rows) for every engine that applies to this case."""
    if case.int8_model is not None:
        yield "edgelstm", "edgelstm int8", _ours(case.int8_model, case.frames, budget, "int8")
        yield "litert", "LiteRT int8", _litert(case.int8_model, case.frames, budget, "int8", tmp)
    if case.float_model is not None:
        yield "edgelstm", "edgelstm f32", _ours(case.float_model, case.frames, budget, "f32")
        yield "litert", "LiteRT f32", _litert(case.float_model, case.frames, budget, "f32", tmp)
        yield "onnxruntime", "onnxruntime f32", _onnxruntime(case.float_model, case.frames, budget, tmp)
    yield "torch", "PyTorch", _torch(case, budget)
    for path in tflite_files:
        n_states = 2 if case.kind.split("+")[0] == "lstm" else 1      # LSTM h, c; GRU / RNN h
        yield "file", f"LiteRT ({path.name})", _litert_file(path, case.frames, case.hidden_size, n_states)


def _measure(fn, inputs, per_call_steps: int, budget: Budget):
    if inputs is None:
        fn()  # warm-up (compiles on first use)
        ns = time_repeats(fn, budget.repeats)
    else:
        time_calls(fn, inputs, min(500, budget.calls))
        ns = time_calls(fn, inputs, budget.calls)
    return ns / per_call_steps


def _row(case: Case, runtime: str, api: str, per_step_ns: np.ndarray, steps: int, agrees, peak) -> dict:
    macs = macs_per_step((case.int8_model or case.float_model).spec)
    med = float(np.median(per_step_ns)) / 1e3
    row = {"model": case.name, "kind": case.kind, "input_size": case.input_size, "hidden_size": case.hidden_size,
           "runtime": runtime, "api": api, "steps_per_call": steps, "median_us": med,
           "p99_us": float(np.percentile(per_step_ns, 99)) / 1e3, "n": int(per_step_ns.size),
           "gmacs": macs / (med * 1e3), "agrees": agrees}
    if peak and "int8" in runtime:
        row["peak_fraction"] = row["gmacs"] / peak
    return row


_REF_FOR = {"int8": "edgelstm int8", "f32": "edgelstm f32"}


def _ratios(rows: list[dict]) -> None:
    """Each row's ``x_vs_edgelstm``: its median over edgelstm's matching row on the same model and dtype (step
    against ``step``, sequence against ``step_many``); above 1 means edgelstm is faster."""
    ours = {(r["model"], r["runtime"], r["api"]): r["median_us"] for r in rows if r["runtime"].startswith("edgelstm")}
    for r in rows:
        dtype = "int8" if "int8" in r["runtime"] else "f32"
        ref_api = "step_many" if r["steps_per_call"] > 1 and not r["api"].startswith("streams") else "step"
        ref = ours.get((r["model"], _REF_FOR[dtype], ref_api))
        r["x_vs_edgelstm"] = r["median_us"] / ref if ref else None


def headline(rows: list[dict]) -> dict:
    """The issue's target ratios, per model, where both sides were measured."""
    out = {}
    by = {(r["model"], r["runtime"], r["api"].split(" ")[0]): r["median_us"] for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        g = lambda rt, api: by.get((model, rt, api))  # noqa: E731
        lr_step = g("LiteRT int8", "full")
        h = {}
        if lr_step and g("edgelstm int8", "step"):
            h["litert_int8_full_step / our int8 step"] = lr_step / g("edgelstm int8", "step")
        if lr_step and g("edgelstm int8", "step_many"):
            h["litert_int8_full_step / our int8 step_many"] = lr_step / g("edgelstm int8", "step_many")
        for dt in ("int8", "f32"):
            if g(f"LiteRT {dt}", "sequence") and g(f"edgelstm {dt}", "step_many"):
                h[f"litert_{dt}_sequence / our {dt} step_many"] = \
                    g(f"LiteRT {dt}", "sequence") / g(f"edgelstm {dt}", "step_many")
        streams = next((r["median_us"] for r in rows if r["model"] == model and r["runtime"] == "edgelstm int8"
                        and r["api"].startswith("streams")), None)
        if streams and g("edgelstm int8", "step"):
            h["our int8 streams per stream / our int8 step"] = streams / g("edgelstm int8", "step")
        out[model] = h
    return out


def run_bench(*, model_path=None, sweep: bool = False, quick: bool = False, kinds=None, input_sizes=None,
              hidden_sizes=None, peers=PEERS, tflite=(), peak_gmacs: float | None = None,
              progress: bool | None = None) -> dict:
    """Measure and return the result dict (see the module docstring); ``write_report`` saves it.
    ``tflite``: your own .tflite step models (frame + state in, output + state out) to time beside ours."""
    if (model_path is None) == (not sweep):
        raise InputError("bench: give a model file or sweep=True (not both)")
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise InputError(f"bench: unknown peer(s) {sorted(unknown)}; choose from {', '.join(PEERS)}")
    tflite_files = [Path(p) for p in tflite]
    for p in tflite_files:
        if not p.is_file():
            raise InputError(f"bench: .tflite file not found: {p}")
    budget = QUICK if quick else FULL
    if model_path is not None:
        cases = [file_case(model_path, T=budget.T)]
    else:
        if quick:
            kinds, input_sizes, hidden_sizes = (kinds or ("lstm",)), (input_sizes or (40,)), \
                (hidden_sizes or (64,))
        cases = sweep_cases(kinds=kinds or SWEEP_KINDS, input_sizes=input_sizes or SWEEP_INPUT_SIZES,
                            hidden_sizes=hidden_sizes or SWEEP_HIDDEN_SIZES, T=budget.T)
    wanted = {"edgelstm", "file", *peers}   # "file": the --tflite models, always timed when given
    peak = {"gmacs": peak_gmacs, "derivation": "given with --peak-gmacs"} if peak_gmacs else int8_peak()
    rows, skipped, samples = [], [], {}
    with tempfile.TemporaryDirectory(prefix="edgelstm-bench-") as d, \
            Progress(total=len(cases), desc="bench", enabled=progress) as bar:
        for case in cases:
            tmp = Path(d)
            for key, label, gen in _engines(case, budget, tmp, tflite_files):
                if key not in wanted:
                    continue
                try:
                    for runtime, api, fn, inputs, steps, agrees in gen:
                        ns = _measure(fn, inputs, steps, budget)
                        rows.append(_row(case, runtime, api, ns, steps, agrees, peak["gmacs"]))
                        if inputs is not None and steps == 1:
                            samples[(case.name, runtime, api)] = ns
                except Skip as e:
                    skipped.append({"model": case.name, "peer": label, "reason": str(e)})
            bar.advance()
    _ratios(rows)
    return {"machine": machine_info(), "int8_peak": peak, "budget": budget.__dict__, "rows": rows,
            "headline": headline(rows), "skipped": skipped, "_samples": samples}


# ----------------------------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    m, peak = result["machine"], result["int8_peak"]
    lines = [f"edgelstm bench on {m['cpu']} ({m['cores']} cores), Python {m['python']}, load average "
             f"{', '.join(f'{v:.1f}' for v in (m['load_average'] or []))}",
             f"int8 peak: {peak['gmacs']:.1f} GMAC/s per core ({peak['derivation']})" if peak["gmacs"]
             else f"int8 peak: unknown ({peak['derivation']})", ""]
    for model in dict.fromkeys(r["model"] for r in result["rows"]):
        lines += [f"### {model}", "",
                  "| runtime | API | median µs/step | p99 µs/step | GMAC/s | % int8 peak | × edgelstm | agrees |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in result["rows"]:
            if r["model"] != model:
                continue
            pf = f"{100 * r['peak_fraction']:.1f}" if r.get("peak_fraction") is not None else ""
            xv = f"{r['x_vs_edgelstm']:.2f}" if r.get("x_vs_edgelstm") is not None else ""
            ag = {True: "yes", False: "NO", None: ""}[r["agrees"]]
            lines.append(f"| {r['runtime']} | {r['api']} | {r['median_us']:.2f} | {r['p99_us']:.2f} | "
                         f"{r['gmacs']:.2f} | {pf} | {xv} | {ag} |")
        h = result["headline"].get(model, {})
        if h:
            lines += [""] + [f"- {k}: {v:.2f}x" for k, v in h.items()]
        lines.append("")
    if result["skipped"]:
        lines += ["Skipped:", ""] + [f"- {s['model']}: {s['peer']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def plots(result: dict, outdir: Path) -> list[Path]:
    """latency_vs_hidden.png (step-like rows, one panel per kind and input size) and
    latency_distribution.png (per-call step latency of every step-like row of the first model)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise Skip("plots need matplotlib (pip install 'edgelstm[bench]')") from e
    rows, written = result["rows"], []
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    sizes = list(dict.fromkeys(r["input_size"] for r in rows))
    # colour = runtime, line style = API family, so ~20 series stay tellable apart
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    colours = {rt: plt.get_cmap("tab20")(k % 20) for k, rt in enumerate(runtimes)}

    def style(api):
        return ("-", "o") if api == "step" or api.startswith("full") or api.startswith("cell") or \
            api.startswith("module") else (":", "s") if api.startswith("streams") else ("--", "^")

    width = 5.5 * len(sizes) + 4.0            # 4 inches on the right for the legend
    fig, axes = plt.subplots(len(kinds), len(sizes), figsize=(width, 3.8 * len(kinds)), squeeze=False)
    plot_part = 5.5 * len(sizes) / width
    for (i, kind), (j, I) in ((a, b) for a in enumerate(kinds) for b in enumerate(sizes)):
        ax = axes[i][j]
        series = {}
        for r in rows:
            if (r["kind"], r["input_size"]) == (kind, I) and r["hidden_size"]:
                series.setdefault((r["runtime"], r["api"]), []).append((r["hidden_size"], r["median_us"]))
        for (rt, api), pts in series.items():
            pts.sort()
            ls, mk = style(api)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker=mk, color=colours[rt], label=f"{rt} {api}")
        ax.set(title=f"{kind} I={I}", xlabel="hidden size H", ylabel="median µs per step", yscale="log")
        ax.set_xscale("log", base=2)
    legend = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    fig.legend(list(legend.values()), list(legend), fontsize=7, loc="upper left",
               bbox_to_anchor=(plot_part + 0.01, 0.98))
    fig.tight_layout(rect=(0, 0, plot_part, 1))
    written.append(outdir / "latency_vs_hidden.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    samples = result.get("_samples", {})
    first = rows[0]["model"] if rows else None
    mine = {"\n".join(textwrap.wrap(f"{rt} {api}", 18)): ns / 1e3 for (m, rt, api), ns in samples.items() if m == first}
    if mine:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(mine)), 4))
        ax.boxplot(list(mine.values()), whis=(1, 99), showfliers=False)
        ax.set_xticks(range(1, len(mine) + 1), list(mine), fontsize=7)
        ax.set(title=f"per-call step latency, {first} (whiskers p1-p99)", ylabel="µs", yscale="log")
        fig.tight_layout()
        written.append(outdir / "latency_distribution.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def write_report(result: dict, outdir, *, with_plots: bool = True) -> dict:
    """bench.json + bench.md (+ PNG plots) in ``outdir``; returns {"json", "markdown", "plots", "note"}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    (outdir / "bench.json").write_text(json.dumps(public, indent=1) + "\n")
    (outdir / "bench.md").write_text(markdown(result))
    out = {"json": str(outdir / "bench.json"), "markdown": str(outdir / "bench.md"), "plots": [], "note": None}
    if with_plots:
        try:
            out["plots"] = [str(p) for p in plots(result, outdir)]
        except Skip as e:
            out["note"] = str(e)
    return out


if __name__ == "__main__":  # pragma: no cover - use `edgelstm bench`
    sys.exit("use: edgelstm bench --help")
