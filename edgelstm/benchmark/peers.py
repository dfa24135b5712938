"""The peers: LiteRT, onnxruntime and PyTorch running a model beside edgelstm, each as an app would call it.

The step wrappers (``litert_step``, ``ort_step``, ``torch_step``) are what gets timed: one frame in, the state
fed back for the next call.  The ``*_rows`` generators build a peer for one model, check that it computes what
ours does, and yield the rows ``run_bench`` times: (runtime, api, per-call callable, inputs or None, steps per
call, agrees)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import EdgeLSTMError

AGREE_ATOL = 1e-4          # float peers: float32 rounding over a few hundred steps stays far below this


class Skip(Exception):
    """A peer that cannot run here (not installed, or the model is outside what its format expresses)."""


def agrees(model, reference: np.ndarray, got: np.ndarray, *, atol: float = AGREE_ATOL) -> bool:
    """int8: the peer's integers equal ours exactly; float: within ``atol``."""
    got = np.asarray(got).reshape(reference.shape)
    if model.is_quantized:
        s_out, zp_out = model.quant.act[-1]
        ours = np.round(reference / np.float32(s_out)).astype(np.int64) + zp_out
        return bool(np.array_equal(ours, got.astype(np.int64)))
    return bool(np.abs(reference - got).max() <= atol)


def quantize_frames(model, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(what an int8 peer is fed, what our model sees): for an int8 model the frames quantized with its input
    scale, and those integers dequantized (so both sides step the same values); for a float model, the frames."""
    if not model.is_quantized:
        return frames, frames
    s_in, zp_in = model.quant.act[0]
    xq = np.clip(np.round(frames / np.float32(s_in)) + zp_in, -128, 127).astype(np.int8)
    return xq, ((xq.astype(np.float32) - zp_in) * np.float32(s_in)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- LiteRT
def litert_interpreter():
    """LiteRT's Interpreter class (ai_edge_litert, else tflite_runtime), or Skip."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise Skip("LiteRT not installed (pip install 'edgelstm[tflite]')") from e
    return Interpreter


def litert_step(it, x_index: int, y_index: int, state_pairs=()):
    """LiteRT's full streaming step as an app runs it: set the frame and every state input, invoke, keep every
    state output for the next call. ``state_pairs``: (input tensor details, output tensor index); none when
    the state stays in the graph's variable tensors. The zero state is real 0, so each quantized state tensor
    starts at its own zero point."""
    if not state_pairs:
        def step(x):
            it.set_tensor(x_index, x)
            it.invoke()
            return it.get_tensor(y_index)
        return step
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


def litert_rows(model, frames, dtype: str, tmp: Path):
    """LiteRT rows on our own exports: the step file (``mode="step"``: frame and state in, output and state out,
    bound by signature name) when ``to_tflite`` can write it, else the sequence file invoked one frame at a time
    (its state stays in the op's variable tensors); then the fused sequence over T frames."""
    Interpreter = litert_interpreter()
    from ..export import to_tflite
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
    xq, ours_frames = quantize_frames(model, frames)
    reference = model.stream().step_many(ours_frames[:200])

    if "step" not in refused:
        it = Interpreter(model_path=str(tmp / f"step_{dtype}.tflite"), num_threads=1)
        it.allocate_tensors()
        sig = it._get_full_signature_list()["serving_default"]   # {"inputs": {name: tensor}, "outputs": ...}
        ins, outs = dict(sig["inputs"]), dict(sig["outputs"])
        xi, yi = ins.pop("x"), outs.pop("y")
        details = {d["index"]: d for d in it.get_input_details()}
        lr_step = litert_step(it, xi, yi, [(details[ins[n]], outs[n]) for n in ins])
        xshape = tuple(details[xi]["shape"])
        api = "full step (state in/out)"
    else:
        it = Interpreter(model_path=str(tmp / f"sequence_{dtype}.tflite"), num_threads=1)
        d = it.get_input_details()[0]
        it.resize_tensor_input(d["index"], [1, 1, F])
        it.allocate_tensors()
        lr_step = litert_step(it, d["index"], it.get_output_details()[0]["index"])
        xshape = (1, 1, F)
        api = "full step (state in variable tensors)"
    step_inputs = [np.ascontiguousarray(x.reshape(xshape)) for x in xq[:256]]
    got = np.array([np.array(lr_step(x)).reshape(-1) for x in step_inputs[:200]])
    yield rt, api, lr_step, step_inputs, 1, agrees(model, reference, got)

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
    yield rt, "sequence", lr_seq, None, T, agrees(model, reference, lr_seq()[0, :200])


def litert_file_step(path: Path, frames: np.ndarray, hidden_size: int | None, n_states: int, *,
                     n_inputs: int = 256):
    """LiteRT's full streaming step on a user's own .tflite step model (e.g. converter-made) -> (step, its
    inputs made from the first ``n_inputs`` frames, "int8" or "f32").  Its first input of the frame's size is the frame; every
    other input is a state, fed back from the output of the same shape (in order). Refused (Skip) unless its
    shapes are a case's (frame size F, n_states states of hidden_size elements)."""
    Interpreter = litert_interpreter()
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
    inputs = [np.ascontiguousarray(x.reshape(x_in["shape"])) for x in xs[:n_inputs]]
    step = litert_step(it, x_in["index"], free[0]["index"] if free else outs[0]["index"], pairs)
    dtype = "int8" if any(d["dtype"] == np.int8 for d in it.get_tensor_details()) else "f32"
    return step, inputs, dtype


def litert_file_rows(path: Path, frames: np.ndarray, hidden_size: int | None, n_states: int):
    """``litert_file_step`` timed beside a case of the same shapes, so its ratio to our step compares like with
    like; it is a different model, so no outputs are compared."""
    step, inputs, dtype = litert_file_step(path, frames, hidden_size, n_states)
    yield f"LiteRT {dtype} ({path.name})", "full step (state in/out)", step, inputs, 1, None


# ---------------------------------------------------------------------------------------------- onnxruntime
def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise Skip("onnxruntime not installed (pip install 'edgelstm[onnx]')") from e
    return onnxruntime


def ort_session(model):
    """An onnxruntime CPU session (a path or the ONNX bytes) on one thread, or Skip."""
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def ort_zero_state(sess) -> dict:
    """{name: zeros} for every input after the first (the state inputs); free dimensions taken as 1."""
    return {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in sess.get_inputs()[1:]}


def ort_step(sess):
    """onnxruntime's full streaming step: the frame (first input) and every state input in, the output (first
    output) and every state output out, each state output fed back as the next call's state input (in order).
    ``step.reset()`` zeroes the state."""
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    x_name = inputs[0].name
    state_in = [i.name for i in inputs[1:]]
    out_names = [o.name for o in outputs]
    feed = ort_zero_state(sess)

    def step(x):
        feed[x_name] = x
        res = sess.run(out_names, feed)
        for n, v in zip(state_in, res[1:]):
            feed[n] = v
        return res[0]

    step.reset = lambda: feed.update(ort_zero_state(sess))
    return step


def onnxruntime_rows(model, frames, tmp: Path):
    """onnxruntime on our ``to_onnx(streaming=True)`` export: the fed-back step, and the whole sequence."""
    _onnxruntime()               # refuse before exporting when the peer is absent
    from ..export import to_onnx
    T, F = frames.shape
    path = tmp / "m.onnx"
    try:
        to_onnx(model, path, streaming=True)
    except EdgeLSTMError as e:
        raise Skip(str(e)) from e
    sess = ort_session(path)
    ort = ort_step(sess)
    reference = model.stream().step_many(frames[:200])
    step_inputs = [np.ascontiguousarray(x.reshape(1, 1, F)) for x in frames[:256]]
    got = np.array([ort(x).reshape(-1) for x in step_inputs[:200]])
    ort.reset()
    yield "onnxruntime f32", "full step (state in/out)", ort, step_inputs, 1, agrees(model, reference, got)
    x_name, y_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    x_seq = frames[None]
    zeros = ort_zero_state(sess)

    def ort_seq():
        return sess.run([y_name], {x_name: x_seq, **zeros})[0]
    yield "onnxruntime f32", "sequence", ort_seq, None, T, agrees(model, reference, ort_seq()[0, :200])


# ---------------------------------------------------------------------------------------------- PyTorch
def torch_zero_state(kind: str, H: int, lead=(1,)):
    """The zero state of a PyTorch LSTM ((h, c)) or GRU / RNN (h), shaped ``lead + (H,)``."""
    import torch
    zero = torch.zeros(*lead, H)
    return (zero, zero.clone()) if kind == "lstm" else zero


def torch_cell(rec, kind: str):
    """nn.LSTMCell / GRUCell / RNNCell holding the weights of ``rec``'s (an nn.LSTM / GRU / RNN) first layer."""
    import torch
    cell_cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind]
    cell = cell_cls(rec.input_size, rec.hidden_size).eval()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, n).copy_(getattr(rec, n + "_l0"))
    return cell


def torch_step(module, state=None, *, no_grad: bool = True):
    """A PyTorch module called one frame at a time, ``y, state = module(x, state)``, its state fed back.
    ``no_grad=False`` when the caller already times inside ``torch.inference_mode()``."""
    import torch
    box = [state]
    if not no_grad:
        def step(x):
            y, box[0] = module(x, box[0])
            return y
        return step

    def step(x):
        with torch.no_grad():
            y, box[0] = module(x, box[0])
            return y
    return step


class _Recurrent:
    """nn.Sequential(rec, Linear, Sigmoid) forward that keeps the recurrent module's tuple output apart."""

    def __init__(self, seq):
        self.rec, self.lin, self.act = seq[0], seq[1], seq[2]

    def __call__(self, x, state):
        y, state = self.rec(x, state)
        return self.act(self.lin(y)), state


def torch_rows(case):
    """PyTorch float32 on the case's twin: nn.*Cell + Linear per step, the module over T per step; and
    ``quantize_dynamic`` int8 (LSTM / GRU only) per step and over T."""
    if case.torch_twin is None:
        raise Skip("no PyTorch twin (PyTorch not installed, or the model came from a file)")
    import torch
    torch.set_num_threads(1)
    seq = case.torch_twin
    rec, lin = seq[0], seq[1]
    kind, T = case.kind, case.frames.shape[0]
    cell = torch_cell(rec, kind)
    state = [torch_zero_state(kind, case.hidden_size)]

    def cell_step(x):
        with torch.no_grad():
            state[0] = st = cell(x, state[0])
            h = st[0] if kind == "lstm" else st
            return torch.sigmoid(lin(h))

    frames = torch.from_numpy(case.frames)
    reference = case.float_model.stream().step_many(case.frames[:200])
    step_inputs = [frames[k:k + 1] for k in range(min(256, T))]
    got = np.array([cell_step(x).numpy().reshape(-1) for x in step_inputs[:200]])
    state[0] = torch_zero_state(kind, case.hidden_size)
    yield "PyTorch f32", "cell step (state in/out)", cell_step, step_inputs, 1, \
        agrees(case.float_model, reference, got)
    x_seq = frames[None]

    whole = _Recurrent(seq)

    def seq_run():
        with torch.no_grad():
            return whole(x_seq, None)[0]
    yield "PyTorch f32", "sequence", seq_run, None, T, \
        agrees(case.float_model, reference, seq_run()[0, :200].numpy())

    if kind == "rnn":
        raise Skip("PyTorch dynamic int8 has no nn.RNN")
    with warnings.catch_warnings():  # torch.ao deprecation notices: still PyTorch 2.13's dynamic int8
        warnings.simplefilter("ignore")
        dq = _Recurrent(torch.ao.quantization.quantize_dynamic(
            seq, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8))
    step3 = [frames[k:k + 1][None] for k in range(min(256, T))]
    yield "PyTorch dyn-int8", "module step (state in/out)", torch_step(dq), step3, 1, None

    def dq_seq():
        with torch.no_grad():
            return dq(x_seq, None)[0]
    yield "PyTorch dyn-int8", "sequence", dq_seq, None, T, None
