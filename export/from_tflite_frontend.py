"""from_tflite: the conv front-end layer kinds (edgelstm/ir/frontend.py) read back from the builtin ops that write
them (export/to_tflite_frontend.py), for the layer-chain reader in export/from_tflite.py.

A frame tensor is ``[1, T, ...]`` (T = 1, a fixed frame count, or resizable with shape signature -1); the per-frame
dims are the declared ones after T. Patterns, each checked op by op (options, constant shapes and dtypes, per-channel
int8 weights with zero points 0, equal quantizations where LiteRT copies raw values):

conv1d      [PAD | MIRROR_PAD REFLECT ->] CONV_2D (filter [O, 1, K, C]) | DEPTHWISE_CONV_2D (filter [1, 1, K, O])
            on a [1, T, L, C] view, VALID, stride / dilation along W only, fused NONE / RELU / RELU6
            [-> LOGISTIC | TANH]
pad         PAD | MIRROR_PAD REFLECT along the length of a [1, T, L, C] view
magnitude   [DEQUANTIZE ->] SPLIT (2, last axis) -> MUL a*a, MUL b*b -> ADD -> SQRT [-> QUANTIZE]
activation  RELU, RELU6, LOGISTIC, TANH
context     data movement (CONCATENATION, RESHAPE, SLICE, STRIDED_SLICE) from a state input ctx (K values) and the
            frame to [the K stream values before each frame, the frame], with the new state (the last K values)
            as the paired state output: recognized by evaluating those ops on labelled values (for a resizable T at
            several T), so any arrangement that computes it is read.
Anything else raises ImportModelError naming the operator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgelstm.errors import ImportModelError
from edgelstm.ir.frontend import MAX_FRAME, Activation, Context, Conv1D, Magnitude, Pad

# ops that only a front end writes: a file with one of them is read as a layer chain
FRONT_END_OPS = ("DEPTHWISE_CONV_2D", "PAD", "MIRROR_PAD", "SQRT", "RELU6", "STRIDED_SLICE")
_DATA_MOVES = ("CONCATENATION", "RESHAPE", "SLICE", "STRIDED_SLICE")
_ACTS = {"RELU": "relu", "RELU6": "relu6", "LOGISTIC": "sigmoid", "TANH": "tanh"}
_FUSED = {0: "none", 1: "relu", 3: "relu6"}
_F32, _I8 = 0, 9
_VALID = 1
_LABEL = 1 << 40          # frame values are labelled +(_LABEL + i), context values -(_LABEL + i): never a constant
_MAX_PROBE = 1 << 24      # labelled values one evaluation of a context may hold


@dataclass
class Match:
    """One layer read from the file: the layer, its int8 parameters (None: float or weightless), its output tensor,
    the operators it used and, for a context, its (state input, state output)."""
    layer: object
    q: dict | None
    out: int
    ops: list = field(default_factory=list)
    state: tuple | None = None


class FrontEndReader:
    def __init__(self, g, quantized: bool, state_pairs: dict, probes: tuple):
        self.g, self.q, self.pairs, self.probes = g, quantized, state_pairs, probes
        self.consumers: dict[int, list[int]] = {}
        for i, op in enumerate(g.ops):
            for t in op["inputs"]:
                self.consumers.setdefault(t, []).append(i)

    # -------------------------------------------------------------------------------------------- tensors
    def fail(self, i: int, why: str):
        raise ImportModelError(f"{self.g.where}: operator {i} ({self.g.ops[i]['name']}): {why}")

    def frame_dims(self, t: int, what: str) -> list[int]:
        shape = self.g.tensor(t, what)["shape"]
        if len(shape) < 3 or shape[0] != 1:
            raise ImportModelError(f"{self.g.where}: {what}: shape {shape}, expected a [1, T, ...] frame tensor")
        return list(shape[2:])

    def quant(self, t: int, what: str):
        """(scale, zp) of an int8 tensor in an int8 file, None in a float file; checks the type."""
        info = self.g.tensor(t, what)
        if info["type"] != (_I8 if self.q else _F32):
            raise ImportModelError(f"{self.g.where}: {what}: tensor type {info['type']}, expected "
                                   f"{'int8' if self.q else 'float32'}")
        if not self.q:
            return None
        if info["scale"] is None or len(info["scale"]) != 1:
            raise ImportModelError(f"{self.g.where}: {what}: needs one per-tensor quantization")
        return float(info["scale"][0]), int(info["zp"][0])

    def same_quant(self, a, b) -> bool:
        return a is None or (np.float32(a[0]) == np.float32(b[0]) and a[1] == b[1])

    def const(self, t: int, what: str, dtype) -> np.ndarray:
        info = self.g.tensor(t, what)
        if info["data"] is None or info["data"].dtype != np.dtype(dtype):
            raise ImportModelError(f"{self.g.where}: {what}: expected a constant {np.dtype(dtype)} tensor")
        return info["data"]

    def sole_consumer(self, t: int):
        users = set(self.consumers.get(t, []))           # MUL a * a lists a twice
        return users.pop() if len(users) == 1 else None

    def options(self, i: int, name: str):
        return self.g.options(self.g.ops[i], getattr(self.g.tflite, f"{name}Options"))

    def fused(self, i: int, name: str) -> int:
        """The fused activation of operator i (0 when it has no options table)."""
        if self.g.ops[i]["op"].BuiltinOptions() is None:
            return 0
        return int(self.options(i, name).FusedActivationFunction())

    # ------------------------------------------------------------------------------------------- patterns
    def match(self, i: int, x: int, x_quant) -> Match | None:
        """The layer starting at operator i on frame tensor x (quantization x_quant), or None if operator i starts
        none of the front-end patterns."""
        name = self.g.ops[i]["name"]
        ins = self.g.ops[i]["inputs"]
        if any(t in self.pairs for t in ins):
            return self.context(i, x, x_quant)
        if not ins or ins[0] != x and not (name == "SPLIT" and len(ins) == 2 and ins[1] == x):
            return None
        if name in ("PAD", "MIRROR_PAD"):
            nxt = self.sole_consumer(self.g.ops[i]["outputs"][0])
            if nxt is not None and self.g.ops[nxt]["name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                return self.conv(nxt, x, x_quant, pad=i)
            return self.pad(i, x, x_quant)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self.conv(i, x, x_quant)
        if name in _ACTS:
            return self.activation(i, x, x_quant)
        if name in ("DEQUANTIZE", "SPLIT"):
            return self.magnitude(i, x, x_quant)
        return None

    def padding(self, i: int, x: int, x_quant):
        """(left, right, mode, output) of PAD / MIRROR_PAD operator i along the length of x [1, T, L, C]."""
        op = self.g.ops[i]
        if len(op["inputs"]) != 2:
            self.fail(i, "expected 2 inputs (PADV2's fill value is not supported)")
        dims = self.frame_dims(x, f"operator {i} input")
        pads = self.const(op["inputs"][1], f"operator {i} paddings", np.int32)
        if len(dims) != 2 or pads.shape != (4, 2) or np.any(pads[[0, 1, 3]] != 0) or np.any(pads < 0):
            self.fail(i, f"only padding along the length of a [1, T, L, C] frame is read (paddings {pads.tolist()})")
        mode = "zeros"
        if op["name"] == "MIRROR_PAD":
            if self.options(i, "MirrorPad").Mode() != self.g.tflite.MirrorPadMode.REFLECT:
                self.fail(i, "only REFLECT mode (edge not repeated) is read")
            mode = "reflect"
        out = op["outputs"][0]
        if not self.same_quant(x_quant, self.quant(out, f"operator {i} output")):
            self.fail(i, "output quantization differs from the input's (LiteRT copies the values raw)")
        return int(pads[2, 0]), int(pads[2, 1]), mode, out

    def pad(self, i: int, x: int, x_quant) -> Match:
        L, C = self.frame_dims(x, f"operator {i} input")
        left, right, mode, out = self.padding(i, x, x_quant)
        return Match(Pad(length=L, channels=C, left=left, right=right, mode=mode), None, out, [i])

    def conv(self, i: int, x: int, x_quant, *, pad: int | None = None) -> Match:
        g, op = self.g, self.g.ops[i]
        dims = self.frame_dims(x, f"operator {i} input")
        if len(dims) != 2:
            self.fail(i, f"input frame {dims}: expected a [1, T, L, C] view")
        L, C = dims
        left = right = 0
        mode, used, src = "zeros", [i], x
        if pad is not None:
            left, right, mode, src = self.padding(pad, x, x_quant)
            used = [pad, i]
        if len(op["inputs"]) != 3 or op["inputs"][2] < 0:
            self.fail(i, "a conv without a bias is not read (LiteRT's optimized depthwise kernels crash on one)")
        depthwise = op["name"] == "DEPTHWISE_CONV_2D"
        opts = self.options(i, "DepthwiseConv2D" if depthwise else "Conv2D")
        if opts.Padding() != _VALID or opts.StrideH() != 1 or opts.DilationHFactor() != 1:
            self.fail(i, "only VALID padding with stride and dilation along W (the frame's length) is read")
        act = _FUSED.get(opts.FusedActivationFunction())
        if act is None:
            self.fail(i, f"fused activation {opts.FusedActivationFunction()} is not read (NONE, RELU, RELU6)")
        w = g.tensor(op["inputs"][1], f"operator {i} filter")
        wdt = np.int8 if self.q else np.float32
        if w["data"] is None or w["data"].dtype != wdt or len(w["shape"]) != 4:
            self.fail(i, f"the filter must be a constant 4-D {np.dtype(wdt)} tensor")
        if depthwise:
            _, kh, K, O = w["shape"]
            if w["shape"][0] != 1 or kh != 1 or O % C:
                self.fail(i, f"filter {w['shape']}: expected [1, 1, K, O] with O a multiple of {C} channels")
            weights = np.ascontiguousarray(w["data"].reshape(K, O).T)[:, :, None]          # (O, K, 1)
        else:
            O, kh, K, c_in = w["shape"]
            if kh != 1 or c_in != C:
                self.fail(i, f"filter {w['shape']}: expected [O, 1, K, {C}]")
            weights = w["data"].reshape(O, K, C)
        b = self.const(op["inputs"][2], f"operator {i} bias", np.int32 if self.q else np.float32)
        if b.size != O:
            self.fail(i, f"bias of {b.size} values for {O} output channels")
        out = op["outputs"][0]
        lut = self.sole_consumer(out)
        if act == "none" and lut is not None and g.ops[lut]["name"] in ("LOGISTIC", "TANH"):
            act, final = _ACTS[g.ops[lut]["name"]], g.ops[lut]["outputs"][0]
            used.append(lut)
        else:
            final = out
        Lp = L + left + right
        out_len = (Lp - opts.DilationWFactor() * (K - 1) - 1) // opts.StrideW() + 1
        if self.frame_dims(out, f"operator {i} output") != [out_len, O]:
            self.fail(i, f"output frame {self.frame_dims(out, 'output')}, expected [{out_len}, {O}]")
        layer = Conv1D(length=L, in_channels=C, out_channels=O, kernel_size=K, stride=opts.StrideW(),
                       dilation=opts.DilationWFactor(), pad_left=left, pad_right=right, pad_mode=mode,
                       groups=C if depthwise else 1, activation=act)
        if not self.q:
            layer.directions = [{"w": weights.astype(np.float32), "b": b.astype(np.float32)}]
            self.quant(final, f"operator {i} output")
            return Match(layer, None, final, used)
        if w["zp"] is None or np.any(w["zp"] != 0) or len(w["scale"]) not in (1, O):
            self.fail(i, "int8 filters need symmetric (zero point 0) per-tensor or per-channel scales")
        pre = self.quant(out, f"operator {i} output")
        self.quant(final, f"operator {used[-1]} output")
        q = {"w": weights.astype(np.int8), "w_scale": np.broadcast_to(w["scale"], (O,)).astype(np.float32),
             "b": b.astype(np.int32), "pre_scale": np.array([pre[0]], np.float32),
             "pre_zp": np.array([pre[1]], np.int32)}
        return Match(layer, q, final, used)

    def activation(self, i: int, x: int, x_quant) -> Match:
        out = self.g.ops[i]["outputs"][0]
        self.quant(out, f"operator {i} output")
        size = int(np.prod(self.frame_dims(x, f"operator {i} input")))
        return Match(Activation(size=size, activation=_ACTS[self.g.ops[i]["name"]]), None, out, [i])

    def magnitude(self, i: int, x: int, x_quant) -> Match | None:
        g, used = self.g, []
        src = x
        if g.ops[i]["name"] == "DEQUANTIZE":
            if not self.q:
                return None
            src = g.ops[i]["outputs"][0]
            used.append(i)
            i = self.sole_consumer(src)
            if i is None or g.ops[i]["name"] != "SPLIT":
                return None
        dims = self.frame_dims(x, f"operator {i} input")
        split = g.ops[i]
        if len(dims) != 2 or dims[1] % 2 or len(split["inputs"]) != 2 or split["inputs"][1] != src or \
                len(split["outputs"]) != 2:
            return None
        axis = self.const(split["inputs"][0], f"operator {i} axis", np.int32)
        if axis.size != 1 or int(axis.ravel()[0]) % 4 != 3:
            return None
        used.append(i)
        a, b = split["outputs"]
        squares = []
        for half in (a, b):
            j = self.sole_consumer(half)
            if j is None or g.ops[j]["name"] != "MUL" or g.ops[j]["inputs"] != [half, half]:
                return None
            used.append(j)
            squares.append(g.ops[j]["outputs"][0])
        j = self.sole_consumer(squares[0])
        if j is None or g.ops[j]["name"] != "ADD" or sorted(g.ops[j]["inputs"]) != sorted(squares):
            return None
        used.append(j)
        j = self.sole_consumer(g.ops[j]["outputs"][0])
        if j is None or g.ops[j]["name"] != "SQRT":
            return None
        used.append(j)
        out = g.ops[j]["outputs"][0]
        if self.q:
            j = self.sole_consumer(out)
            if j is None or g.ops[j]["name"] != "QUANTIZE":
                return None
            used.append(j)
            out = g.ops[j]["outputs"][0]
        for k in used[:-1] if self.q else []:            # the float island inside an int8 file
            if self.g.tensor(g.ops[k]["outputs"][0], "magnitude")["type"] != _F32:
                self.fail(k, "expected a float32 output inside the magnitude")
        for k in used:
            if g.ops[k]["name"] in ("MUL", "ADD") and self.fused(k, g.ops[k]["name"].title()):
                self.fail(k, "a fused activation inside the magnitude is not read")
        self.quant(out, f"operator {used[-1]} output")
        return Match(Magnitude(length=dims[0], channels=dims[1] // 2), None, out, used)

    # ------------------------------------------------------------------------------------------- context
    def context(self, i: int, x: int, x_quant) -> Match:
        """Operators from i on that move values from the frame x and one state input: evaluated on labels, one of
        their outputs must be [values before the frame, the frame] and the state's paired output the last K."""
        g = self.g
        si = next(t for t in g.ops[i]["inputs"] if t in self.pairs)
        so = self.pairs[si]
        K = int(np.prod(g.tensor(si, "state input")["shape"]))
        F = int(np.prod(self.frame_dims(x, "context input")))
        if not (0 < K <= MAX_FRAME and 0 < F <= MAX_FRAME and max(self.probes) * (K + F) <= _MAX_PROBE):
            self.fail(i, f"a context of {K} values over {max(self.probes)} frames of {F} is too large to read")
        region, known = [], {x, si}
        for j in range(i, len(g.ops)):      # every later data move computable from x, the state and constants
            op = g.ops[j]
            if op["name"] in _DATA_MOVES and len(op["outputs"]) == 1 and all(
                    t in known or g.tensor(t, f"operator {j} input")["data"] is not None for t in op["inputs"]):
                region.append(j)
                known.add(op["outputs"][0])
        if not region or region[0] != i:
            self.fail(i, "a state input is read only by data movement (CONCATENATION, RESHAPE, SLICE, "
                         "STRIDED_SLICE) into a context")
        values = [self._evaluate(region, x, si, K, F, T) for T in self.probes]
        out = None
        for j in region:                      # the first tensor holding [before, frame] for every frame
            t = g.ops[j]["outputs"][0]
            if all(_frames_equal(v.get(t), _context_labels(T, K, F)) for v, T in zip(values, self.probes)):
                out = t
                break
        if out is None or not all(np.array_equal(np.ravel(v.get(so, [])), _stream(T, K, F)[-K:])
                                  for v, T in zip(values, self.probes)):
            self.fail(i, f"the state input's operators do not compute a context of {K} values over frames of {F} "
                         f"(the values before each frame, and the last {K} as the paired state output)")
        used = _needed(g, region, {out, so}, {x, si})
        for j in used:
            for t in g.ops[j]["outputs"]:
                if not self.same_quant(x_quant, self.quant(t, f"operator {j} output")):
                    self.fail(j, "the context's values keep the frame's quantization (LiteRT copies them raw)")
        if not self.same_quant(x_quant, self.quant(si, "context state input")):
            self.fail(i, "the context state's quantization differs from the frame's")
        return Match(Context(size=F, context=K), None, out, used, state=(si, so))

    def _evaluate(self, region, x, si, K, F, T) -> dict:
        """The region's tensors over T frames when frame value i is labelled _LABEL + i, context value i is
        -(_LABEL + i) and constants hold their values."""
        g = self.g
        dims = self.frame_dims(x, "context input")
        vals = {x: (_LABEL + np.arange(T * F)).reshape([1, T] + dims).astype(np.int64),
                si: -(_LABEL + np.arange(K)).reshape(g.tensor(si, "state input")["shape"])}

        def get(t, j):
            if t in vals:
                return vals[t]
            data = g.tensor(t, f"operator {j} input")["data"]
            return None if data is None else data.astype(np.int64)

        for j in region:
            op = g.ops[j]
            args = [get(t, j) for t in op["inputs"]]
            if any(a is None for a in args):
                continue
            try:
                vals[op["outputs"][0]] = self._move(j, op["name"], args)
            except (ValueError, IndexError):
                continue                      # not a data move these probes can evaluate: not part of the context
        return vals

    def _move(self, j: int, name: str, args: list) -> np.ndarray:
        if name == "CONCATENATION":
            return np.concatenate(args, axis=self.options(j, "Concatenation").Axis())
        if name == "RESHAPE":
            return args[0].reshape([int(v) for v in args[1].ravel()])
        if name == "SLICE":
            return args[0][tuple(slice(int(b), None if s < 0 else int(b + s)) for b, s in zip(args[1], args[2]))]
        opts = self.options(j, "StridedSlice")
        if opts.EllipsisMask() or opts.NewAxisMask() or opts.ShrinkAxisMask() or opts.Offset():
            raise ValueError("strided slice masks")
        return args[0][tuple(slice(None if opts.BeginMask() >> d & 1 else int(b), None if opts.EndMask() >> d & 1
                                   else int(e), int(s)) for d, (b, e, s) in enumerate(zip(*args[1:])))]


def _stream(T: int, K: int, F: int) -> np.ndarray:
    """The labelled stream [ctx, frame 0, ..., frame T - 1]."""
    return np.concatenate([-(_LABEL + np.arange(K)), _LABEL + np.arange(T * F)])


def _context_labels(T: int, K: int, F: int) -> np.ndarray:
    return _stream(T, K, F)[np.arange(T)[:, None] * F + np.arange(K + F)[None, :]]


def _frames_equal(v, want: np.ndarray) -> bool:
    return v is not None and v.size == want.size and v.shape[:2] == (1, want.shape[0]) and \
        np.array_equal(v.reshape(want.shape), want)


def _needed(g, region: list, targets: set, sources: set) -> list:
    """The region's operators that the target tensors depend on, in order."""
    need, used = set(targets), []
    for j in reversed(region):
        out = g.ops[j]["outputs"][0]
        if out in need:
            used.append(j)
            need.update(t for t in g.ops[j]["inputs"] if t not in sources)
    return sorted(used)
