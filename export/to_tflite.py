"""``edgelstm.Model`` to a .tflite file that LiteRT runs, written with the ``flatbuffers`` + ``tflite`` schema
packages (no TensorFlow).

What is written (mode="sequence"): a stack of unidirectional LSTM layers as fused
UNIDIRECTIONAL_SEQUENCE_LSTM ops (int8: TFLite's full-integer 8x8_16 form with its 5 intermediates; float32),
optionally followed by one Dense head as FULLY_CONNECTED (per-channel int8 weights; fused RELU) and LOGISTIC /
TANH / SOFTMAX.  The input is ``[1, T, F]`` with T resizable (shape signature ``[1, -1, F]``); the recurrent
state lives in the LSTM ops' variable tensors and carries over between invokes, like a stream.  int8 models
give outputs identical to edgelstm's runtime in LiteRT (tests/test_to_tflite.py).

mode="step": the same ops over one frame ``[1, 1, F]``, with every LSTM layer's state as explicit inputs AND
outputs, named in the SignatureDef (inputs ``x, h0, c0, h1, c1, ...``, outputs ``y, h0, c0, ...``): the streaming
form apps use (set x and the state, invoke, read y and the new state). The state tensors stay the fused op's
variable tensors, which LiteRT requires and which it reads and updates in place; LiteRT honours the values set
before each invoke (both resolvers; tests/test_to_tflite.py interleaves two streams in one interpreter).

GRU / RNN and op-graph layers are written in mode="step" only, as step graphs of builtin ops (edgelstm/ir/opgraph.py):
int8 GRU / RNN as the int16 cell graphs prepare() runs (edgelstm/program/cellgraph.py: LiteRT's reference, builtin and
default resolvers give identical integers), float32 ones via opgraph.float_cell_graph; imported int8 op graphs get
their state write-back (DEQUANTIZE -> QUANTIZE) inside the graph so each state output has its state input's
quantization.

Not written yet (a clear ImportModelError): bidirectional layers, Dense layers before the last, op graphs that
write part of a tensor (CONCATENATION), GRU / RNN in mode="sequence".
"""
from __future__ import annotations

import os

import numpy as np

from edgelstm.errors import ImportModelError
from edgelstm.quant.params import FIXED_OUTPUT_QUANT
from edgelstm.runtime import Model

from .gate_order import TFLITE_LSTM, TFLITE_PEEPHOLE, split_gates

_FLOAT32, _INT32, _INT64, _INT16, _INT8 = 0, 2, 4, 7, 9
_TYPES = {np.dtype(np.float32): _FLOAT32, np.dtype(np.int32): _INT32, np.dtype(np.int64): _INT64,
          np.dtype(np.int16): _INT16, np.dtype(np.int8): _INT8}
# name -> (builtin code, version for int8, for float32, for int16 activations), as the TF converter writes them
# (int16: the 16x8 kernels; ADD / SUB version 5 is the general-scale int16 form)
_OPS = {"UNIDIRECTIONAL_SEQUENCE_LSTM": (44, 1, 1, 1), "FULLY_CONNECTED": (9, 5, 1, 7), "LOGISTIC": (14, 2, 1, 3),
        "TANH": (28, 2, 1, 3), "SOFTMAX": (25, 2, 1, 3), "ADD": (0, 2, 1, 5), "SUB": (41, 2, 1, 5),
        "MUL": (18, 2, 1, 4), "RELU": (19, 2, 1, 3), "QUANTIZE": (114, 2, 1, 2), "DEQUANTIZE": (6, 2, 1, 2),
        "SLICE": (65, 2, 1, 4), "RESHAPE": (22, 1, 1, 1), "CONV_2D": (3, 3, 1, 4), "CAST": (53, 1, 1, 1),
        "REVERSE_V2": (105, 2, 1, 2), "CONCATENATION": (2, 2, 1, 3), "UNPACK": (88, 2, 1, 3),
        "DEPTHWISE_CONV_2D": (4, 3, 1, 5), "PAD": (34, 2, 1, 3), "MIRROR_PAD": (100, 2, 1, 3),
        "RELU6": (21, 2, 1, 3), "SQRT": (75, 2, 1, 2)}
_ACT_OP = {"sigmoid": "LOGISTIC", "tanh": "TANH", "softmax": "SOFTMAX"}


class _Tensor:
    def __init__(self, name, shape, dtype, *, data=None, scale=None, zp=None, qdim=0, variable=False,
                 signature=None):
        self.name, self.shape, self.dtype, self.data = name, list(shape), np.dtype(dtype), data
        self.scale, self.zp, self.qdim, self.variable, self.signature = scale, zp, qdim, variable, signature


class _GraphBuilder:
    """Collects tensors and operators, then serializes one subgraph + SignatureDef into a TFL3 flatbuffer."""

    def __init__(self):
        self.tensors: list[_Tensor] = []
        self.ops: list[tuple[str, list[int], list[int], list[int], object]] = []

    def tensor(self, *args, **kw) -> int:
        self.tensors.append(_Tensor(*args, **kw))
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, options, intermediates=()):
        # the op's version follows its activation types: int16 if its data input or output is int16
        io = [self.tensors[i].dtype for i in (inputs[0], outputs[0])]
        kind = 3 if np.dtype(np.int16) in io else 1 if np.dtype(np.int8) in io else 2
        self.ops.append((name, list(inputs), list(outputs), list(intermediates), options, _OPS[name][kind]))

    def finish(self, inputs: list[int], outputs: list[int], quantized: bool, *, in_names=None,
               out_names=None) -> bytes:
        import flatbuffers
        import tflite as T

        b = flatbuffers.Builder(1024)

        def ivec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt32(v)
            return b.EndVector()

        def fvec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependFloat32(float(v))
            return b.EndVector()

        def lvec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt64(int(v))
            return b.EndVector()

        def ovec(start, offsets):
            start(b, len(offsets))
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        # buffers: 0 is the schema's empty sentinel; one per constant tensor after it
        buffer_data, tensor_buffer = [None], []
        for t in self.tensors:
            if t.data is None:
                tensor_buffer.append(0)
            else:
                buffer_data.append(np.ascontiguousarray(t.data, dtype=t.dtype).tobytes())
                tensor_buffer.append(len(buffer_data) - 1)
        buffers = []
        for raw in buffer_data:
            data_off = None
            if raw:
                b.StartVector(1, len(raw), 16)
                b.head = b.head - len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
                data_off = b.EndVector()
            T.BufferStart(b)
            if data_off is not None:
                T.BufferAddData(b, data_off)
            buffers.append(T.BufferEnd(b))

        tensors = []
        for t, buf in zip(self.tensors, tensor_buffer):
            name = b.CreateString(t.name)
            shape = ivec(T.TensorStartShapeVector, t.shape)
            sig = ivec(T.TensorStartShapeSignatureVector, t.signature) if t.signature else None
            quant = None
            if t.scale is not None:
                sc = fvec(T.QuantizationParametersStartScaleVector, np.atleast_1d(t.scale))
                zp = lvec(T.QuantizationParametersStartZeroPointVector, np.atleast_1d(t.zp))
                T.QuantizationParametersStart(b)
                T.QuantizationParametersAddScale(b, sc)
                T.QuantizationParametersAddZeroPoint(b, zp)
                T.QuantizationParametersAddQuantizedDimension(b, t.qdim)
                quant = T.QuantizationParametersEnd(b)
            T.TensorStart(b)
            T.TensorAddShape(b, shape)
            if sig is not None:
                T.TensorAddShapeSignature(b, sig)
            T.TensorAddType(b, _TYPES[t.dtype])
            T.TensorAddBuffer(b, buf)
            T.TensorAddName(b, name)
            if quant is not None:
                T.TensorAddQuantization(b, quant)
            T.TensorAddIsVariable(b, t.variable)
            tensors.append(T.TensorEnd(b))

        names = sorted({(op[0], op[5]) for op in self.ops}, key=lambda nv: (_OPS[nv[0]][0], nv[1]))
        code_index = {nv: i for i, nv in enumerate(names)}
        codes = []
        for n, version in names:
            code = _OPS[n][0]
            T.OperatorCodeStart(b)
            T.OperatorCodeAddDeprecatedBuiltinCode(b, code)
            T.OperatorCodeAddBuiltinCode(b, code)
            T.OperatorCodeAddVersion(b, version)
            codes.append(T.OperatorCodeEnd(b))

        operators = []
        for name, ins, outs, inter, options, version in self.ops:
            opt_type, opt_off = options(b, T)
            i_vec = ivec(T.OperatorStartInputsVector, ins)
            o_vec = ivec(T.OperatorStartOutputsVector, outs)
            n_vec = ivec(T.OperatorStartIntermediatesVector, inter) if inter else None
            T.OperatorStart(b)
            T.OperatorAddOpcodeIndex(b, code_index[(name, version)])
            T.OperatorAddInputs(b, i_vec)
            T.OperatorAddOutputs(b, o_vec)
            if opt_type:
                T.OperatorAddBuiltinOptionsType(b, opt_type)
                T.OperatorAddBuiltinOptions(b, opt_off)
            if n_vec is not None:
                T.OperatorAddIntermediates(b, n_vec)
            operators.append(T.OperatorEnd(b))

        t_vec = ovec(T.SubGraphStartTensorsVector, tensors)
        in_vec = ivec(T.SubGraphStartInputsVector, inputs)
        out_vec = ivec(T.SubGraphStartOutputsVector, outputs)
        op_vec = ovec(T.SubGraphStartOperatorsVector, operators)
        sg_name = b.CreateString("main")
        T.SubGraphStart(b)
        T.SubGraphAddTensors(b, t_vec)
        T.SubGraphAddInputs(b, in_vec)
        T.SubGraphAddOutputs(b, out_vec)
        T.SubGraphAddOperators(b, op_vec)
        T.SubGraphAddName(b, sg_name)
        subgraph = T.SubGraphEnd(b)

        def tensor_maps(indices, prefix, names):
            maps = []
            for k, idx in enumerate(indices):
                nm = b.CreateString(names[k] if names else prefix if len(indices) == 1 else f"{prefix}_{k}")
                T.TensorMapStart(b)
                T.TensorMapAddName(b, nm)
                T.TensorMapAddTensorIndex(b, idx)
                maps.append(T.TensorMapEnd(b))
            return maps

        sig_in = ovec(T.SignatureDefStartInputsVector, tensor_maps(inputs, "x", in_names))
        sig_out = ovec(T.SignatureDefStartOutputsVector, tensor_maps(outputs, "y", out_names))
        key = b.CreateString("serving_default")
        T.SignatureDefStart(b)
        T.SignatureDefAddInputs(b, sig_in)
        T.SignatureDefAddOutputs(b, sig_out)
        T.SignatureDefAddSignatureKey(b, key)
        T.SignatureDefAddSubgraphIndex(b, 0)
        signature = T.SignatureDefEnd(b)

        sub_vec = ovec(T.ModelStartSubgraphsVector, [subgraph])
        code_vec = ovec(T.ModelStartOperatorCodesVector, codes)
        buf_vec = ovec(T.ModelStartBuffersVector, buffers)
        sig_vec = ovec(T.ModelStartSignatureDefsVector, [signature])
        desc = b.CreateString("edgelstm")
        T.ModelStart(b)
        T.ModelAddVersion(b, 3)
        T.ModelAddOperatorCodes(b, code_vec)
        T.ModelAddSubgraphs(b, sub_vec)
        T.ModelAddDescription(b, desc)
        T.ModelAddBuffers(b, buf_vec)
        T.ModelAddSignatureDefs(b, sig_vec)
        b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _lstm_options(layer):
    def build(b, T):
        T.UnidirectionalSequenceLSTMOptionsStart(b)
        T.UnidirectionalSequenceLSTMOptionsAddFusedActivationFunction(b, T.ActivationFunctionType.TANH)
        T.UnidirectionalSequenceLSTMOptionsAddCellClip(b, float(layer.cell_clip))
        T.UnidirectionalSequenceLSTMOptionsAddProjClip(b, float(layer.proj_clip))
        T.UnidirectionalSequenceLSTMOptionsAddTimeMajor(b, False)
        return T.BuiltinOptions.UnidirectionalSequenceLSTMOptions, T.UnidirectionalSequenceLSTMOptionsEnd(b)
    return build


def _fc_options(relu: bool):
    def build(b, T):
        T.FullyConnectedOptionsStart(b)
        T.FullyConnectedOptionsAddFusedActivationFunction(
            b, T.ActivationFunctionType.RELU if relu else T.ActivationFunctionType.NONE)
        T.FullyConnectedOptionsAddKeepNumDims(b, True)
        return T.BuiltinOptions.FullyConnectedOptions, T.FullyConnectedOptionsEnd(b)
    return build


def _act_options(name):
    def build(b, T):
        if name != "SOFTMAX":
            return 0, 0
        T.SoftmaxOptionsStart(b)
        T.SoftmaxOptionsAddBeta(b, 1.0)
        return T.BuiltinOptions.SoftmaxOptions, T.SoftmaxOptionsEnd(b)
    return build


def _check_supported(model: Model, step: bool) -> None:
    layers = model.spec.layers
    for k, layer in enumerate(layers):
        where = f"layer {k} ({layer.kind})"
        backward = layer.bidirectional or getattr(layer, "reverse", False)
        if backward and step:
            raise ImportModelError(f"to_tflite: {where}: a {'bidirectional' if layer.bidirectional else 'reverse'} "
                                   f"layer needs whole sequences: export it with mode='sequence'")
        if layer.kind == "dense" and k != len(layers) - 1:
            raise ImportModelError(f"to_tflite: {where}: only a final Dense head is exported")
        if layer.kind == "lstm" and layer.peephole and layer.proj_size:
            # LiteRT's int8 peephole loop runs over n_output (= P), not the H cells: not our arithmetic
            raise ImportModelError(f"to_tflite: {where}: peephole together with projection is not exported "
                                   f"(LiteRT applies the peepholes to the first P cells only)")


def to_tflite(model: Model, path, *, mode: str = "sequence", frames: int | None = None) -> None:
    """Write ``model`` as a .tflite file (see the module docstring for what is supported). ``frames``: the
    sequence length of a mode="sequence" file of a model with GRU / RNN / op-graph layers (their step graph is
    unrolled over that many frames; required there, refused elsewhere)."""
    if not isinstance(model, Model):
        raise ImportModelError(f"to_tflite expects an edgelstm.Model, got {type(model).__name__}")
    if mode not in ("sequence", "step"):
        raise ImportModelError(f"to_tflite: mode must be 'sequence' or 'step', got {mode!r}")
    try:
        import flatbuffers  # noqa: F401
        import tflite  # noqa: F401
    except ImportError:
        raise ImportModelError("to_tflite needs the 'flatbuffers' and 'tflite' packages: "
                               "pip install 'edgelstm[tflite]'") from None
    if model.initial_state is not None:
        raise ImportModelError("to_tflite: LiteRT starts the LSTM state tensors from zeros; this model has its own "
                               "initial_state (set model.initial_state = None to export it with a zero start)")
    _check_supported(model, mode == "step")
    cells = any(layer.kind in ("gru", "rnn", "ops") for layer in model.spec.layers)
    if mode == "sequence" and cells and not (isinstance(frames, int) and not isinstance(frames, bool)
                                              and 1 <= frames <= 100_000):
        raise ImportModelError(f"to_tflite: a mode='sequence' file of a GRU / RNN / op-graph model is its step "
                               f"graph unrolled over a fixed number of frames: pass frames=T (1..100000), got "
                               f"{frames!r}")
    if frames is not None and not (mode == "sequence" and cells):
        raise ImportModelError("to_tflite: frames= is only for mode='sequence' files of GRU / RNN / op-graph models "
                               "(LSTM-only sequence files take any length)")
    data = _build(model, step=mode == "step", frames=frames)
    p = os.fspath(path)
    try:
        with open(p, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ImportModelError(f"{p}: cannot write: {e.strerror or e}") from None


def _build(model: Model, *, step: bool = False, frames: int | None = None) -> bytes:
    q = model.quant
    quantized = q is not None
    g = _GraphBuilder()
    F = model.input_size
    act_dtype = np.int8 if quantized else np.float32
    if frames:      # a fixed-length sequence file (GRU / RNN step graphs unrolled over the frames)
        x = g.tensor("x", [1, frames, F], act_dtype, **_act_quant(q, 0))
    else:
        x = g.tensor("x", [1, 1, F], act_dtype, signature=None if step else [1, -1, F], **_act_quant(q, 0))
    model_in, cur, states, names = x, x, [], []
    for k, layer in enumerate(model.spec.layers):
        if layer.kind == "lstm" and (layer.bidirectional or layer.reverse):
            cur = _backward_lstm(g, layer, k, cur, q, model)
        elif layer.kind == "lstm":
            cur = _lstm(g, layer, k, cur, q, model)
            states += g.ops[-1][1][18:20]          # the op's variable h and c tensors
            names += [f"h{k}", f"c{k}"]
        elif layer.kind in ("gru", "rnn", "ops"):
            if frames:
                cur, st = _unrolled_cells(g, layer, k, cur, q, frames)
            else:
                graph, params = _cell_graph(layer, k, q, 0)
                cur, st_in, st_out = _opgraph(g, graph, params, k, cur, quantized)
                st = list(zip(st_in, st_out))
            states += st
            names += [f"h{k}"] if layer.kind != "ops" else [f"s{k}_{i}" for i in range(len(st))]
        else:
            cur = _dense(g, layer, k, cur, q, model)
    if not step and not frames:
        return g.finish([model_in], [cur], quantized)
    # mode="step": one frame [1, 1, F]; every LSTM's h and c are graph inputs AND outputs. They stay the fused
    # op's variable tensors (LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM requires that), which it reads at invoke
    # and updates in place: an app sets them before each invoke (any state: its own streams, a saved state)
    # and reads them after it (measured: both resolvers honour the inputs; tests/test_to_tflite.py).
    # An unrolled sequence file: the GRU / RNN / op-graph states in (start) and out (after the last frame).
    ins = [t if isinstance(t, int) else t[0] for t in states]
    outs = [t if isinstance(t, int) else t[1] for t in states]
    return g.finish([model_in] + ins, [cur] + outs, quantized, in_names=["x"] + names, out_names=["y"] + names)


def _cell_graph(layer, k: int, q, d: int):
    """(op graph, constants) of direction d of a GRU / RNN / op-graph layer, as the runtime runs it."""
    from edgelstm.program.cellgraph import cell_graph
    from edgelstm.program.cellgraph import float_cell_graph
    if layer.kind == "ops":
        return layer, q.layers[k][0] if q is not None else layer.directions[0]
    if q is not None:       # the int16 graph prepare() runs (edgelstm/program/cellgraph.py)
        return cell_graph(layer, q.layers[k][d], q.act[k], q.act[k + 1])
    return float_cell_graph(layer, d)


def _unrolled_cells(g: _GraphBuilder, layer, k: int, x: int, q, frames: int):
    """A GRU / RNN / op-graph layer over a fixed number of frames: UNPACK the [1, T, W] input into frames, the
    step graph once per frame (weights shared; the state chained from frame to frame; a backward direction
    walks the frames in reverse), CONCATENATION of the per-frame outputs back to [1, T, O] (both directions
    on the feature axis). A forward, unidirectional layer's state is an input (the start) and an output (after
    the last frame); other directions start from zeros. Returns (output, [(state in, state out), ...])."""
    quantized = q is not None
    dt = np.int8 if quantized else np.float32
    W = layer.input_size
    aq = _act_quant(q, k)
    xs = [g.tensor(f"l{k}.x.f{t}", [1, W], dt, **aq) for t in range(frames)]

    def unpack(b, T):
        T.UnpackOptionsStart(b)
        T.UnpackOptionsAddNum(b, frames)
        T.UnpackOptionsAddAxis(b, 1)
        return T.BuiltinOptions.UnpackOptions, T.UnpackOptionsEnd(b)
    g.op("UNPACK", [x], xs, unpack)
    n_dir = 2 if layer.bidirectional else 1
    per_dir, states = [], []
    for d in range(n_dir):
        graph, params = _cell_graph(layer, k, q, d)
        backward = d == 1 or getattr(layer, "reverse", False)
        cache, ys = {}, [None] * frames
        state_in = None
        if backward or n_dir == 2:    # zeros: a whole-sequence direction has no streaming state
            state_in = [_zero_state_tensor(g, graph, si, f"l{k}.d{d}.s{i}.zero", quantized)
                        for i, (si, _) in enumerate(graph.state)]
        first = None
        for t in (range(frames - 1, -1, -1) if backward else range(frames)):
            y, st_in, st_out = _opgraph(g, graph, params, k, xs[t], quantized, state_in=state_in, cache=cache,
                                        tag=f".d{d}.f{t}")
            first = st_in if first is None else first
            ys[t], state_in = y, st_out
        if not (backward or n_dir == 2):
            states += list(zip(first, state_in))
        O = graph.tensors[graph.y][0]
        yq = {"scale": graph.tensors[graph.y][1], "zp": graph.tensors[graph.y][2]} if quantized else {}
        out = g.tensor(f"l{k}.d{d}.out", [1, frames, O], dt, **yq)
        g.op("CONCATENATION", ys, [out], _concat_options(1))
        per_dir.append(out)
    if n_dir == 1:
        return per_dir[0], states
    yq = _act_quant(q, k + 1)
    out = g.tensor(f"l{k}.out2", [1, frames, 2 * layer.hidden_size], dt, **yq)
    g.op("CONCATENATION", per_dir, [out], _concat_options(2))
    return out, states


def _zero_state_tensor(g: _GraphBuilder, graph, si: int, name: str, quantized: bool) -> int:
    """A constant tensor holding state si's zero (its zero point), shaped as _opgraph shapes graph tensors."""
    size, scale, zp = graph.tensors[si][:3]
    four_d = any(op[0] == "CONV_2D" for op in graph.ops)
    shape = [1, 1, 1, size] if four_d else [1, size]
    if not quantized:
        return g.tensor(name, shape, np.float32, data=np.zeros(shape, np.float32))
    dt = np.int16 if graph.tensors[si][4] == 16 else np.int8
    return g.tensor(name, shape, dt, data=np.full(shape, zp, dt), scale=scale, zp=zp)


def _concat_options(axis: int):
    def build(b, T):
        T.ConcatenationOptionsStart(b)
        T.ConcatenationOptionsAddAxis(b, axis)
        T.ConcatenationOptionsAddFusedActivationFunction(b, 0)
        return T.BuiltinOptions.ConcatenationOptions, T.ConcatenationOptionsEnd(b)
    return build


def _backward_lstm(g: _GraphBuilder, layer, k: int, x: int, q, model) -> int:
    """A reverse or bidirectional LSTM layer over one whole sequence: the backward direction is the fused op on
    the time-reversed input, reversed back (REVERSE_V2 on axis 1 moves int8 / float values unchanged); a
    bidirectional layer concatenates [forward, backward] on the feature axis, both already in the layer's
    output quantization (CONCATENATION then copies). Every invoke is one sequence: the op state persists
    between invokes, so an app calls reset_all_variables() before the next sequence."""
    dt, R = (np.int8 if q is not None else np.float32), layer.recurrent_size
    quant = _act_quant(q, k + 1)
    axis = g.tensor(f"l{k}.time_axis", [1], np.int32, data=np.array([1], np.int32))

    def reverse(src, name, width, tensor_quant):   # REVERSE_V2 moves the integers: the quantization stays
        out = g.tensor(name, [1, 1, width], dt, signature=[1, -1, width], **tensor_quant)
        g.op("REVERSE_V2", [src, axis], [out], _act_options("NONE"))
        return out

    parts = [] if layer.reverse else [_lstm(g, layer, k, x, q, model, d=0)]
    x_reversed = reverse(x, f"l{k}.x_reversed", layer.input_size, _act_quant(q, k))
    backward = _lstm(g, layer, k, x_reversed, q, model, d=1 if layer.bidirectional else 0)
    parts.append(reverse(backward, f"l{k}.backward", R, quant))
    if len(parts) == 1:
        return parts[0]
    out = g.tensor(f"l{k}.out2", [1, 1, 2 * R], dt, signature=[1, -1, 2 * R], **quant)

    g.op("CONCATENATION", parts, [out], _concat_options(2))
    return out


def _act_quant(q, k):
    """The int8 quantization of the activations entering layer k (empty for a float model)."""
    return {"scale": q.act[k][0], "zp": q.act[k][1]} if q is not None else {}


def _lstm(g: _GraphBuilder, layer, k: int, x: int, q, model, *, d: int = 0) -> int:
    H, I, R, P = layer.hidden_size, layer.input_size, layer.recurrent_size, layer.proj_size
    ins = [-1] * 24
    ins[0] = x
    inter = []
    tag = f"l{k}" if d == 0 else f"l{k}.d{d}"
    if q is None:
        w = layer.directions[d]
        wx, wh, bias = (split_gates(w[n], "lstm") for n in ("w_x", "w_h", "b"))
        for gate, slot in zip(TFLITE_LSTM, (1, 2, 3, 4)):
            ins[slot] = g.tensor(f"{tag}.w_x.{gate}", [H, I], np.float32, data=wx[_g(gate)])
            ins[slot + 4] = g.tensor(f"{tag}.w_h.{gate}", [H, R], np.float32, data=wh[_g(gate)])
            ins[slot + 11] = g.tensor(f"{tag}.b.{gate}", [H], np.float32, data=bias[_g(gate)])
        if layer.peephole:
            peep = split_gates(w["w_peep"], "peephole")
            for gate, slot in zip(TFLITE_PEEPHOLE, (9, 10, 11)):
                ins[slot] = g.tensor(f"{tag}.peep.{gate}", [H], np.float32, data=peep[gate][0])
        if P:
            ins[16] = g.tensor(f"{tag}.w_proj", [P, H], np.float32, data=w["w_proj"])
            ins[17] = g.tensor(f"{tag}.b_proj", [P], np.float32, data=w["b_proj"])
        ins[18] = g.tensor(f"{tag}.h", [1, R], np.float32, variable=True)
        ins[19] = g.tensor(f"{tag}.c", [1, H], np.float32, variable=True)
        out = g.tensor(f"{tag}.out", [1, 1, R], np.float32, signature=[1, -1, R])
    else:
        p = q.layers[k][d]
        s_in, s_out, zp_out = q.act[k][0], q.act[k + 1][0], q.act[k + 1][1]
        wx, wh, bias = (split_gates(p[n], "lstm") for n in ("w_x", "w_h", "b"))
        for n_g, (gate, slot) in enumerate(zip(TFLITE_LSTM, (1, 2, 3, 4))):
            ws_x, ws_h = float(p["w_x_scale"][n_g]), float(p["w_h_scale"][n_g])
            ins[slot] = g.tensor(f"{tag}.w_x.{gate}", [H, I], np.int8, data=wx[_g(gate)], scale=ws_x, zp=0)
            ins[slot + 4] = g.tensor(f"{tag}.w_h.{gate}", [H, R], np.int8, data=wh[_g(gate)], scale=ws_h, zp=0)
            ins[slot + 11] = g.tensor(f"{tag}.b.{gate}", [H], np.int32, data=bias[_g(gate)],
                                      scale=float(np.float32(s_in) * np.float32(ws_x)), zp=0)
        if layer.peephole:
            peep = split_gates(p["w_peep"], "peephole")
            for n_g, (gate, slot) in enumerate(zip(TFLITE_PEEPHOLE, (9, 10, 11))):
                ins[slot] = g.tensor(f"{tag}.peep.{gate}", [H], np.int16, data=peep[gate][0],
                                     scale=float(p["w_peep_scale"][n_g]), zp=0)
        s_hid, zp_hid = (float(p["hidden_scale"][0]), int(p["hidden_zp"][0])) if P else (s_out, zp_out)
        if P:
            ws_p = float(p["w_proj_scale"][0])
            ins[16] = g.tensor(f"{tag}.w_proj", [P, H], np.int8, data=p["w_proj"], scale=ws_p, zp=0)
            ins[17] = g.tensor(f"{tag}.b_proj", [P], np.int32, data=p["b_proj"],
                               scale=float(np.float32(s_hid) * np.float32(ws_p)), zp=0)
        ins[18] = g.tensor(f"{tag}.h", [1, R], np.int8, variable=True, scale=s_out, zp=zp_out)
        ins[19] = g.tensor(f"{tag}.c", [1, H], np.int16, variable=True, scale=2.0 ** int(p["cell_exp"][0]), zp=0)
        # the 8x8_16 kernel reads 5 intermediates: 4 gate ones (unused without layer norm: Q3.12 is implied)
        # and the hidden state's quantization
        for gate in ("input", "forget", "cell", "output"):
            inter.append(g.tensor(f"{tag}.{gate}_intermediate", [0], np.float32))
        inter.append(g.tensor(f"{tag}.hidden_intermediate", [0], np.int8, scale=s_hid, zp=zp_hid))
        out = g.tensor(f"{tag}.out", [1, 1, R], np.int8, signature=[1, -1, R], scale=s_out, zp=zp_out)
    g.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [out], _lstm_options(layer), inter)
    return out


def _g(tflite_gate: str) -> str:
    return {"c": "g"}.get(tflite_gate, tflite_gate)  # split_gates keys are canonical letters


def _dense(g: _GraphBuilder, layer, k: int, x: int, q, model) -> int:
    O, I = layer.output_size, layer.input_size
    act = layer.activation
    if q is None:
        w = layer.directions[0]
        wt = g.tensor(f"l{k}.w", [O, I], np.float32, data=w["w"])
        bt = g.tensor(f"l{k}.b", [O], np.float32, data=w["b"])
        fc_out = g.tensor(f"l{k}.logits", [1, 1, O], np.float32, signature=[1, -1, O])
        g.op("FULLY_CONNECTED", [x, wt, bt], [fc_out], _fc_options(act == "relu"))
        if act not in _ACT_OP:
            return fc_out
        out = g.tensor(f"l{k}.out", [1, 1, O], np.float32, signature=[1, -1, O])
        g.op(_ACT_OP[act], [fc_out], [out], _act_options(_ACT_OP[act]))
        return out
    p = q.layers[k][0]
    s_in = q.act[k][0]
    ws = p["w_scale"].astype(np.float32)
    wt = g.tensor(f"l{k}.w", [O, I], np.int8, data=p["w"], scale=ws, zp=np.zeros(O, np.int64), qdim=0)
    bt = g.tensor(f"l{k}.b", [O], np.int32, data=p["b"], scale=(np.float32(s_in) * ws).astype(np.float32),
                  zp=np.zeros(O, np.int64), qdim=0)
    s_pre, zp_pre = float(p["pre_scale"][0]), int(p["pre_zp"][0])
    fc_out = g.tensor(f"l{k}.logits", [1, 1, O], np.int8, signature=[1, -1, O], scale=s_pre, zp=zp_pre)
    g.op("FULLY_CONNECTED", [x, wt, bt], [fc_out], _fc_options(act == "relu"))
    if act not in _ACT_OP:
        return fc_out
    s_out, zp_out = FIXED_OUTPUT_QUANT[act]
    out = g.tensor(f"l{k}.out", [1, 1, O], np.int8, signature=[1, -1, O], scale=s_out, zp=zp_out)
    g.op(_ACT_OP[act], [fc_out], [out], _act_options(_ACT_OP[act]))
    return out


def _opgraph(g: _GraphBuilder, graph, params: dict, k: int, x: int, quantized: bool, *, state_in=None,
             cache=None, tag: str = ""):
    """Write an op-graph layer (edgelstm/ir/opgraph.py IR) as builtin ops; returns (output tensor, state input
    tensors, state output tensors). Its x is the previous tensor; every other tensor is [1, size], or
    [1, 1, 1, size] in a graph with CONV_2D ops (edgelstm's int16 GRU/RNN graphs: a 1x1 conv over a 4-D tensor).
    Unrolled over frames (``_unrolled_cells``): ``state_in`` gives existing tensors for the state inputs,
    ``cache`` shares the constant tensors (weights, biases, shapes) between frames, ``tag`` names the rest."""
    T = graph.tensors
    cache = {} if cache is None else cache

    def tensor(name, *args, **kw):
        if kw.get("data") is None:
            return g.tensor(name + tag, *args, **kw)
        if name not in cache:
            cache[name] = g.tensor(name, *args, **kw)
        return cache[name]

    four_d = any(op[0] == "CONV_2D" for op in graph.ops)

    def dtype(i):
        return np.float32 if not quantized else np.int16 if T[i][4] == 16 else np.int8

    def shape(size):
        return [1, 1, 1, size] if four_d else [1, size]

    def quant(i):
        return {"scale": T[i][1], "zp": T[i][2]} if quantized else {}

    none = _act_options("NONE")
    ids = {graph.x: x}
    if four_d:                                # the previous layer's [1, 1, F] as [1, 1, 1, F]
        ids[graph.x] = tensor(f"l{k}.x4", shape(T[graph.x][0]), dtype(graph.x), **quant(graph.x))
        g.op("RESHAPE", [x, tensor(f"l{k}.x4_shape", [4], np.int32, data=np.array(shape(T[graph.x][0]),
                                                                                    np.int32))],
             [ids[graph.x]], none)
    given = {} if state_in is None else {si: t for (si, _), t in zip(graph.state, state_in)}
    for i, t in enumerate(T):
        if i == graph.x:
            continue
        if i in given:
            ids[i] = given[i]
            continue
        size, const = t[0], t[3]
        data = None if const is None else np.asarray(params["c"][const:const + size], dtype(i)).reshape(shape(size))
        ids[i] = tensor(f"l{k}.t{i}", shape(size), dtype(i), data=data, **quant(i))

    def act_options(cls_name, act, pot_scale_int16=None):
        def build(b, TT):
            getattr(TT, f"{cls_name}Start")(b)
            getattr(TT, f"{cls_name}AddFusedActivationFunction")(b, act)
            if pot_scale_int16 is not None:     # the schema's default (true) selects another int16 arithmetic
                getattr(TT, f"{cls_name}AddPotScaleInt16")(b, pot_scale_int16)
            return getattr(TT.BuiltinOptions, cls_name), getattr(TT, f"{cls_name}End")(b)
        return build

    for n, (name, a, b2, out, act, p0, p1, p2) in enumerate(graph.ops):
        na, no = T[a][0], T[out][0]
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            w = np.asarray(params["w"][p0:p0 + na * no], np.int8 if quantized else np.float32).reshape(no, na)
            if name == "CONV_2D":                 # int16 in and out, int8 weights, int64 bias
                ws = np.asarray(params["w_scale"][p2:p2 + no], np.float32)
                wt = tensor(f"l{k}.op{n}.w", [no, 1, 1, na], np.int8, data=w.reshape(no, 1, 1, na), scale=ws,
                              zp=np.zeros(no, np.int64), qdim=0)
                bt = tensor(f"l{k}.op{n}.b", [no], np.int64,
                              data=np.zeros(no, np.int64) if p1 < 0 else np.asarray(params["b"][p1:p1 + no], np.int64),
                              scale=(np.float32(T[a][1]) * ws).astype(np.float32), zp=np.zeros(no, np.int64), qdim=0)
                g.op(name, [ids[a], wt, bt], [ids[out]], _conv_options(act))
                continue
            if quantized:
                ws = np.asarray(params["w_scale"][p2:p2 + no], np.float32)
                wt = tensor(f"l{k}.op{n}.w", [no, na], np.int8, data=w, scale=ws, zp=np.zeros(no, np.int64), qdim=0)
                bt = -1 if p1 < 0 else tensor(f"l{k}.op{n}.b", [no], np.int32, data=params["b"][p1:p1 + no],
                                                scale=(np.float32(T[a][1]) * ws).astype(np.float32),
                                                zp=np.zeros(no, np.int64), qdim=0)
            else:
                wt = tensor(f"l{k}.op{n}.w", [no, na], np.float32, data=w)
                bt = -1 if p1 < 0 else tensor(f"l{k}.op{n}.b", [no], np.float32, data=params["b"][p1:p1 + no])
            g.op(name, [ids[a], wt, bt], [ids[out]], _fc_act_options(act))
        elif name in ("ADD", "SUB", "MUL"):
            cls = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[name]
            pot = False if name != "MUL" and dtype(out) == np.int16 else None
            g.op(name, [ids[a], ids[b2]], [ids[out]], act_options(cls, act, pot))
        else:
            size = p2 or no
            if p1 or size != no:
                raise ImportModelError(f"to_tflite: layer {k} (ops): op {n} ({name}) writes part of a tensor "
                                       f"(a concatenation): not exported yet")
            src = ids[a]
            if p0 or size != na:                      # part of the input: SLICE it out first
                rank = len(shape(0))
                begin = tensor(f"l{k}.op{n}.begin", [rank], np.int32, data=np.array([0] * (rank - 1) + [p0], np.int32))
                length = tensor(f"l{k}.op{n}.size", [rank], np.int32, data=np.array(shape(size), np.int32))
                src = tensor(f"l{k}.op{n}.slice", shape(size), dtype(a), **quant(a))
                g.op("SLICE", [ids[a], begin, length], [src], none)
            if name == "COPY" and dtype(a) != dtype(out):   # int8 -> int16: CAST keeps the integer values
                g.op("CAST", [src], [ids[out]], _cast_options(_INT8, _INT16))
            elif name == "COPY":
                shp = tensor(f"l{k}.op{n}.shape", [len(shape(0))], np.int32, data=np.array(shape(size), np.int32))
                g.op("RESHAPE", [src, shp], [ids[out]], none)
            elif name == "REQUANTIZE_FLOAT":
                f = tensor(f"l{k}.op{n}.float", shape(size), np.float32)
                g.op("DEQUANTIZE", [src], [f], none)
                g.op("QUANTIZE", [f], [ids[out]], none)
            else:                                     # LOGISTIC, TANH, RELU, QUANTIZE
                g.op(name, [src], [ids[out]], none)
    # the layer output as [1, 1, O] like every other layer's (a fused LSTM after it needs 3-D input)
    shp = tensor(f"l{k}.out_shape", [3], np.int32, data=np.array([1, 1, T[graph.y][0]], np.int32))
    y = tensor(f"l{k}.out", [1, 1, T[graph.y][0]], dtype(graph.y), **quant(graph.y))
    g.op("RESHAPE", [ids[graph.y], shp], [y], none)
    # state outputs in their state input's quantization (the write-back edgelstm's stream does: LiteRT's
    # DEQUANTIZE -> QUANTIZE), so an app feeds them straight back
    st_out = []
    for i, (si, so) in enumerate(graph.state):
        if quantized and T[si][1:3] != T[so][1:3]:
            f = tensor(f"l{k}.s{i}.float", shape(T[so][0]), np.float32)
            back = tensor(f"l{k}.s{i}.next", shape(T[si][0]), dtype(si), **quant(si))
            g.op("DEQUANTIZE", [ids[so]], [f], none)
            g.op("QUANTIZE", [f], [back], none)
            st_out.append(back)
        else:
            st_out.append(ids[so])
    return y, [ids[si] for si, _ in graph.state], st_out


def _conv_options(act: int, *, stride: int = 1, dilation: int = 1, depth_multiplier: int | None = None):
    """CONV_2D options (VALID padding; stride / dilation along W, the length axis of a (1, 1, L, C) frame), or
    DEPTHWISE_CONV_2D options when depth_multiplier is given."""
    def build(b, T):
        name = "Conv2D" if depth_multiplier is None else "DepthwiseConv2D"
        getattr(T, f"{name}OptionsStart")(b)
        getattr(T, f"{name}OptionsAddPadding")(b, T.Padding.VALID)
        getattr(T, f"{name}OptionsAddStrideW")(b, stride)
        getattr(T, f"{name}OptionsAddStrideH")(b, 1)
        getattr(T, f"{name}OptionsAddDilationWFactor")(b, dilation)
        getattr(T, f"{name}OptionsAddDilationHFactor")(b, 1)
        getattr(T, f"{name}OptionsAddFusedActivationFunction")(b, act)
        if depth_multiplier is not None:
            T.DepthwiseConv2DOptionsAddDepthMultiplier(b, depth_multiplier)
        return getattr(T.BuiltinOptions, f"{name}Options"), getattr(T, f"{name}OptionsEnd")(b)
    return build


def _cast_options(in_type: int, out_type: int):
    def build(b, T):
        T.CastOptionsStart(b)
        T.CastOptionsAddInDataType(b, in_type)
        T.CastOptionsAddOutDataType(b, out_type)
        return T.BuiltinOptions.CastOptions, T.CastOptionsEnd(b)
    return build


def _fc_act_options(act: int):
    def build(b, T):
        T.FullyConnectedOptionsStart(b)
        T.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        return T.BuiltinOptions.FullyConnectedOptions, T.FullyConnectedOptionsEnd(b)
    return build
