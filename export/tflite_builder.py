"""The .tflite flatbuffer writer shared by edgelstm's TFLite exporters (export/to_tflite.py and its front-end part,
export/to_tflite_frontend.py) and the tests' single-op kits: tensors, operators and their options, one subgraph
with a SignatureDef, serialized with the ``flatbuffers`` + ``tflite`` schema packages (no TensorFlow)."""
from __future__ import annotations

import numpy as np

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
        "RELU6": (21, 2, 1, 3), "SQRT": (75, 2, 1, 2), "SPLIT": (49, 2, 1, 3), "STRIDED_SLICE": (45, 2, 1, 4)}


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

    def op(self, name, inputs, outputs, options, intermediates=(), *, version: int | None = None):
        # the op's version follows its activation types: int16 if its data input or output is int16
        io = [self.tensors[i].dtype for i in (inputs[0], outputs[0])]
        kind = 3 if np.dtype(np.int16) in io else 1 if np.dtype(np.int8) in io else 2
        self.ops.append((name, list(inputs), list(outputs), list(intermediates), options,
                         version or _OPS[name][kind]))

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


def _act_options(name):
    def build(b, T):
        if name != "SOFTMAX":
            return 0, 0
        T.SoftmaxOptionsStart(b)
        T.SoftmaxOptionsAddBeta(b, 1.0)
        return T.BuiltinOptions.SoftmaxOptions, T.SoftmaxOptionsEnd(b)
    return build


def _concat_options(axis: int):
    def build(b, T):
        T.ConcatenationOptionsStart(b)
        T.ConcatenationOptionsAddAxis(b, axis)
        T.ConcatenationOptionsAddFusedActivationFunction(b, 0)
        return T.BuiltinOptions.ConcatenationOptions, T.ConcatenationOptionsEnd(b)
    return build


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


def _options(name: str, **fields):
    """The ``{name}Options`` table with the given fields set (``{name}OptionsAdd{field}``), as an op's options."""
    def build(b, T):
        getattr(T, f"{name}OptionsStart")(b)
        for field, value in fields.items():
            getattr(T, f"{name}OptionsAdd{field}")(b, value)
        return getattr(T.BuiltinOptions, f"{name}Options"), getattr(T, f"{name}OptionsEnd")(b)
    return build


def _cast_options(in_type: int, out_type: int):
    return _options("Cast", InDataType=in_type, OutDataType=out_type)


def _fc_act_options(act: int):
    return _options("FullyConnected", FusedActivationFunction=act)


def _pad_options(mode: str | None):
    """PAD options (mode None: constant fill), or MIRROR_PAD's ("reflect": edge not repeated, or "symmetric")."""
    def build(b, T):
        if mode is None:
            T.PadOptionsStart(b)
            return T.BuiltinOptions.PadOptions, T.PadOptionsEnd(b)
        T.MirrorPadOptionsStart(b)
        T.MirrorPadOptionsAddMode(b, {"reflect": T.MirrorPadMode.REFLECT, "symmetric": T.MirrorPadMode.SYMMETRIC}[mode])
        return T.BuiltinOptions.MirrorPadOptions, T.MirrorPadOptionsEnd(b)
    return build


def _split_options(n: int):
    return _options("Split", NumSplits=n)


def _strided_slice_options(*, begin_mask: int = 0, end_mask: int = 0):
    return _options("StridedSlice", BeginMask=begin_mask, EndMask=end_mask)


def _binary_options(name: str):
    """ADD / MUL / SUB options without a fused activation (name "Add", "Mul", "Sub")."""
    return _options(name, FusedActivationFunction=0)
