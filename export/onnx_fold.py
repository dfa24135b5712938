"""Constant folding for the ONNX importer: numpy evaluation of one node on constant inputs, by the semantics of the
model's opset version, with every tensor's size bounded BEFORE it is materialized.

``fold(node, inputs, ctx)`` returns the node's outputs as numpy arrays.  ``ctx`` (a ``FoldContext``) carries the
opset and the budget: the element count of every output is computed from the input shapes and attributes first
and checked against a per-tensor and a cumulative byte bound, and the arithmetic work (elements touched) against
a work bound, so a file of a few KB cannot make the importer allocate gigabytes (ConstantOfShape / Expand / Tile /
Range / Pad / broadcasting bombs) or loop for minutes.  Ops not written here are evaluated by onnx's reference
evaluator only when onnx's own shape inference gives a static output shape within the same bounds; otherwise the
node is refused by name.  Control flow (If / Loop) is the graph walker's business (onnx_graph.py).
"""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError

MAX_TENSOR_BYTES = 64 << 20       # one folded tensor (raised to the largest initializer of the file)
MAX_TOTAL_BYTES = 512 << 20       # all folded tensors together
MAX_WORK = 2_000_000_000          # elements read + written over the whole fold (MatMul: M*N*K)


def final_error(msg: str) -> ImportModelError:
    """An error about the graph's own size or work: no other reading of its input shapes changes it."""
    e = ImportModelError(msg)
    e.final = True
    return e


class FoldContext:
    """The opset of the model and the running budget of one import."""

    def __init__(self, *, opset: int, tensor_bytes: int = MAX_TENSOR_BYTES, total_bytes: int = MAX_TOTAL_BYTES,
                 work: int = MAX_WORK):
        self.opset = opset
        self.tensor_bytes = tensor_bytes
        self.total_bytes = total_bytes
        self.work_left = work
        self.bytes_used = 0

    def check(self, where: str, shape, dtype, *, work: int = 0) -> tuple:
        """Refuse an output of ``shape`` (``dtype``) before allocating it; charge its bytes and ``work``."""
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ImportModelError(f"{where}: negative dimension in the output shape {shape}")
        n = 1
        for s in shape:
            n *= s
        nbytes = n * np.dtype(dtype).itemsize
        if nbytes > self.tensor_bytes:
            raise final_error(f"{where}: folding would make a tensor of shape {shape} ({nbytes / 2**20:.0f} "
                                   f"MiB), over the {self.tensor_bytes >> 20} MiB bound of the importer")
        if self.bytes_used + nbytes > self.total_bytes:
            raise final_error(f"{where}: constant folding would use more than {self.total_bytes >> 20} MiB "
                                   f"in all")
        work = max(int(work), n)
        if work > self.work_left:
            raise final_error(f"{where}: constant folding exceeds the importer's work bound (a graph "
                                   f"that computes too much at import)")
        self.work_left -= work
        self.bytes_used += nbytes
        return shape


def _where(node) -> str:
    return f"node {node.name or '?'} ({node.op_type})"


def _ints(v, where, what) -> list[int]:
    if v is None:
        raise ImportModelError(f"{where}: {what} is missing")
    a = np.asarray(v)
    if a.dtype.kind not in "iub":
        raise ImportModelError(f"{where}: {what} must be integers, got {a.dtype}")
    if a.size > 1 << 16:
        raise ImportModelError(f"{where}: {what} has {a.size} entries")
    return [int(x) for x in a.ravel()]


def _axis(a: int, rank: int, where: str) -> int:
    if not -rank <= a < max(rank, 1):
        raise ImportModelError(f"{where}: axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


def broadcast_shape(shapes, where: str) -> tuple:
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = {int(s[len(s) - rank + k]) for s in shapes if len(s) - rank + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ImportModelError(f"{where}: shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


# ---------------------------------------------------------------------------------------------- the ops
_UNARY = {
    "Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Reciprocal": np.reciprocal,
    "Floor": np.floor, "Ceil": np.ceil, "Sign": np.sign, "Sin": np.sin, "Cos": np.cos, "Tanh": np.tanh,
    "Round": np.round, "Relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "Sigmoid": lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype), "Not": np.logical_not,
    "Identity": lambda x: x, "IsNaN": np.isnan, "Erf": None,
}
_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Pow": None, "Div": None, "Mod": None,
    "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "BitShift": None,
}
_VARIADIC = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}


def _div(a, b, where):
    if a.dtype.kind in "iu":
        if np.any(b == 0):
            raise ImportModelError(f"{where}: integer division by zero")
        q = np.abs(a) // np.abs(b)           # ONNX integer Div truncates toward zero (as C)
        return (np.sign(a) * np.sign(b) * q).astype(a.dtype)
    with np.errstate(all="ignore"):
        return np.divide(a, b).astype(a.dtype)


def _pow(a, b, where):
    with np.errstate(all="ignore"):
        if a.dtype.kind in "iu" and np.any(b < 0):
            raise ImportModelError(f"{where}: integer Pow with a negative exponent")
        return np.power(a, b.astype(a.dtype) if a.dtype.kind == "f" else b).astype(a.dtype)


def _mod(a, b, node, where):
    fmod = _attr(node, "fmod", 0)
    if a.dtype.kind in "iu" and np.any(b == 0):
        raise ImportModelError(f"{where}: Mod by zero")
    with np.errstate(all="ignore"):
        return (np.fmod(a, b) if fmod else np.mod(a, b)).astype(a.dtype)


def _attr(node, name, default=None):
    return node.attrs.get(name, default)


def _reduce_axes(node, ins, ctx, rank, where):
    """Reduce* axes: an attribute up to opset 17 (ReduceSum: 12), an input from then on."""
    input_from = 13 if node.op_type == "ReduceSum" else 18
    if ctx.opset >= input_from:
        axes = _ints(ins[1], where, "axes") if len(ins) > 1 and ins[1] is not None else None
    else:
        axes = node.attrs.get("axes")
    if not axes:
        if _attr(node, "noop_with_empty_axes", 0):
            return None
        return tuple(range(rank))
    return tuple(sorted({_axis(a, rank, where) for a in axes}))


_REDUCERS = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min,
             "ReduceProd": np.prod, "ReduceL2": None, "ReduceSumSquare": None}


def _slice_params(node, ins, ctx, shape, where):
    """(starts, ends, axes, steps) by opset: attributes before 10, inputs from 10."""
    if ctx.opset < 10:
        starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
        axes = node.attrs.get("axes")
        steps = None
    else:
        starts = _ints(ins[1], where, "starts")
        ends = _ints(ins[2], where, "ends")
        axes = _ints(ins[3], where, "axes") if len(ins) > 3 and ins[3] is not None else None
        steps = _ints(ins[4], where, "steps") if len(ins) > 4 and ins[4] is not None else None
    starts, ends = _ints(starts, where, "starts"), _ints(ends, where, "ends")
    axes = list(range(len(starts))) if axes is None else [_axis(a, len(shape), where) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps) or len(set(axes)) != len(axes):
        raise ImportModelError(f"{where}: starts/ends/axes/steps do not match")
    if any(s == 0 for s in steps):
        raise ImportModelError(f"{where}: a step of 0")
    return starts, ends, axes, steps


def slice_index(node, ins, ctx, shape, where) -> tuple:
    """The numpy index of a Slice on a tensor of ``shape`` (used for constants and for the data path)."""
    starts, ends, axes, steps = _slice_params(node, ins, ctx, shape, where)
    idx = [slice(None)] * len(shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        n = int(shape[a])
        # clamp as ONNX does (INT64_MAX / MIN sentinels included)
        s = max(-n - 1, min(n + 1, s))
        e = max(-n - 1, min(n + 1, e))
        lo, hi, step = slice(s, e, st).indices(n)
        idx[a] = slice(lo, hi if hi >= 0 else None, step)
    return tuple(idx)


def _unsq_axes(node, ins, ctx, where):
    if ctx.opset < 13:
        return node.attrs.get("axes")
    return _ints(ins[1], where, "axes") if len(ins) > 1 and ins[1] is not None else None


def squeeze_shape(node, ins, ctx, shape, where) -> tuple:
    axes = _unsq_axes(node, ins, ctx, where)
    if axes is None:
        return tuple(d for d in shape if d != 1)
    axes = {_axis(a, len(shape), where) for a in axes}
    for a in axes:
        if shape[a] != 1:
            raise ImportModelError(f"{where}: squeezes axis {a} of size {shape[a]}")
    return tuple(d for k, d in enumerate(shape) if k not in axes)


def unsqueeze_shape(node, ins, ctx, shape, where) -> tuple:
    axes = _unsq_axes(node, ins, ctx, where)
    if axes is None:
        raise ImportModelError(f"{where}: Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    axes = sorted({_axis(a, rank, where) for a in axes})
    if len(axes) != len(_ints(axes, where, "axes")):
        raise ImportModelError(f"{where}: repeated axes")
    out, it = [], iter(shape)
    for k in range(rank):
        out.append(1 if k in axes else next(it))
    return tuple(out)


def reshape_shape(node, ins, ctx, shape, where) -> tuple:
    target = node.attrs.get("shape") if ctx.opset < 5 else ins[1]
    target = _ints(target, where, "shape")
    allowzero = _attr(node, "allowzero", 0)
    out = []
    for k, t in enumerate(target):
        if t == 0 and not allowzero:
            if k >= len(shape):
                raise ImportModelError(f"{where}: 0 in the target shape at axis {k} beyond the input's rank")
            t = shape[k]
        out.append(t)
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if out.count(-1) > 1 or any(t < -1 for t in out):
        raise ImportModelError(f"{where}: bad target shape {target}")
    if -1 in out:
        known = int(np.prod([t for t in out if t != -1], dtype=np.int64))
        if known == 0 or n % known:
            raise ImportModelError(f"{where}: cannot reshape {tuple(shape)} to {target}")
        out[out.index(-1)] = n // known
    if int(np.prod(out, dtype=np.int64)) != n:
        raise ImportModelError(f"{where}: cannot reshape {tuple(shape)} to {target}")
    return tuple(out)


def split_sizes(node, ins, ctx, dim, where) -> list[int]:
    n_out = len(node.outputs)
    if ctx.opset < 13:
        split = node.attrs.get("split")
    else:
        split = _ints(ins[1], where, "split") if len(ins) > 1 and ins[1] is not None else None
    if split is None:
        parts = node.attrs.get("num_outputs", n_out)
        if parts <= 0:
            raise ImportModelError(f"{where}: num_outputs {parts}")
        if ctx.opset >= 18 and "num_outputs" in node.attrs:
            step = -(-dim // parts)
            split = [min(step, max(dim - k * step, 0)) for k in range(parts)]
        else:
            if dim % n_out:
                raise ImportModelError(f"{where}: axis of size {dim} does not split into {n_out} equal parts")
            split = [dim // n_out] * n_out
    split = _ints(split, where, "split")
    if len(split) != n_out or sum(split) != dim or any(s < 0 for s in split):
        raise ImportModelError(f"{where}: split {split} does not cover the axis of size {dim} in {n_out} parts")
    return split


def pad_params(node, ins, ctx, rank, where):
    """(pads begin/end per axis, mode, constant value) by opset: attributes before 11, inputs from 11."""
    mode = node.attrs.get("mode", "constant")
    if ctx.opset < 11:
        pads = _ints(node.attrs.get("pads"), where, "pads")
        value = float(node.attrs.get("value", 0.0))
        axes = None
    else:
        pads = _ints(ins[1], where, "pads")
        value = ins[2] if len(ins) > 2 and ins[2] is not None else None
        axes = _ints(ins[3], where, "axes") if len(ins) > 3 and ins[3] is not None else None
    if axes is None:
        axes = list(range(rank))
    axes = [_axis(a, rank, where) for a in axes]
    if len(pads) != 2 * len(axes):
        raise ImportModelError(f"{where}: {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        begin[a], end[a] = pads[k], pads[k + len(axes)]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ImportModelError(f"{where}: Pad mode {mode!r}")
    return begin, end, mode, value


def conv_out_len(n, k, stride, dil, pb, pe, where):
    span = dil * (k - 1) + 1
    if n + pb + pe < span:
        raise ImportModelError(f"{where}: the kernel (extent {span}) is longer than the padded input "
                               f"({n + pb + pe})")
    return (n + pb + pe - span) // stride + 1


def _f(x):
    return np.asarray(x)


def fold(node, ins: list, ctx: FoldContext) -> list:
    """Evaluate ``node`` on constant numpy inputs (None for an omitted optional input)."""
    op = node.op_type
    where = _where(node)
    ins = [None if v is None else _f(v) for v in ins]
    x = ins[0] if ins else None
    if op in ("Identity", "Dropout"):
        if op == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
            return [x, np.ones(ctx.check(where, x.shape, np.bool_), np.bool_)]
        return [x]
    if op == "Constant":
        return [node.attrs["__value__"]]
    if op in _UNARY and _UNARY[op] is not None:
        ctx.check(where, x.shape, x.dtype)
        with np.errstate(all="ignore"):
            out = _UNARY[op](x)
        return [np.asarray(out)]
    if op in _BINARY:
        a, b = ins[0], ins[1]
        shape = ctx.check(where, broadcast_shape([a.shape, b.shape], where), a.dtype)
        del shape
        if op == "Div":
            return [_div(a, b, where)]
        if op == "Pow":
            return [_pow(a, b, where)]
        if op == "Mod":
            return [_mod(a, b, node, where)]
        if op == "BitShift":
            d = node.attrs.get("direction", "")
            return [np.left_shift(a, b) if d == "LEFT" else np.right_shift(a, b)]
        with np.errstate(all="ignore"):
            out = _BINARY[op](a, b)
        return [np.asarray(out if out.dtype == np.bool_ else out.astype(a.dtype))]
    if op in _VARIADIC or op == "Mean":
        vals = [v for v in ins if v is not None]
        ctx.check(where, broadcast_shape([v.shape for v in vals], where), vals[0].dtype)
        out = vals[0]
        for v in vals[1:]:
            out = (_VARIADIC.get(op, np.add))(out, v)
        if op == "Mean":
            out = out / len(vals)
        return [np.asarray(out).astype(vals[0].dtype)]
    if op == "Cast":
        import onnx
        to = node.attrs.get("to")
        try:
            dt = onnx.helper.tensor_dtype_to_np_dtype(int(to))
        except Exception:
            raise ImportModelError(f"{where}: Cast to unknown type {to!r}") from None
        ctx.check(where, x.shape, dt)
        with np.errstate(all="ignore"):
            if dt.kind in "iu" and x.dtype.kind == "f":
                x = np.nan_to_num(np.trunc(x))
            return [x.astype(dt)]
    if op == "CastLike":
        ctx.check(where, x.shape, ins[1].dtype)
        return [x.astype(ins[1].dtype)]
    if op == "Shape":
        n = x.ndim
        s, e = node.attrs.get("start", 0), node.attrs.get("end", n)
        s, e = max(-n, min(n, s)), max(-n, min(n, e))
        return [np.array(x.shape[slice(s, e)], np.int64)]
    if op == "Size":
        return [np.array(x.size, np.int64)]
    if op == "Gather":
        idx = ins[1]
        if idx.dtype.kind not in "iu":
            raise ImportModelError(f"{where}: indices must be integers")
        axis = _axis(node.attrs.get("axis", 0), x.ndim, where)
        n = x.shape[axis]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ImportModelError(f"{where}: index out of range for an axis of size {n}")
        shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
        ctx.check(where, shape, x.dtype)
        return [np.take(x, idx.astype(np.int64), axis=axis)]
    if op == "GatherElements":
        idx = ins[1]
        axis = _axis(node.attrs.get("axis", 0), x.ndim, where)
        n = x.shape[axis]
        if idx.ndim != x.ndim or (idx.size and (idx.min() < -n or idx.max() >= n)):
            raise ImportModelError(f"{where}: bad indices")
        ctx.check(where, idx.shape, x.dtype)
        return [np.take_along_axis(x, np.where(idx < 0, idx + n, idx).astype(np.int64), axis=axis)]
    if op == "Unsqueeze":
        return [x.reshape(unsqueeze_shape(node, ins, ctx, x.shape, where))]
    if op == "Squeeze":
        return [x.reshape(squeeze_shape(node, ins, ctx, x.shape, where))]
    if op == "Reshape":
        return [x.reshape(reshape_shape(node, ins, ctx, x.shape, where))]
    if op == "Flatten":
        axis = node.attrs.get("axis", 1)
        axis = axis % (x.ndim + 1) if -x.ndim <= axis <= x.ndim else None
        if axis is None:
            raise ImportModelError(f"{where}: axis out of range")
        return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]
    if op == "Transpose":
        perm = node.attrs.get("perm", list(range(x.ndim))[::-1])
        if sorted(perm) != list(range(x.ndim)):
            raise ImportModelError(f"{where}: perm {perm} for rank {x.ndim}")
        ctx.check(where, x.shape, x.dtype)
        return [np.ascontiguousarray(np.transpose(x, perm))]
    if op == "Concat":
        vals = [v for v in ins if v is not None]
        if not vals:
            raise ImportModelError(f"{where}: no inputs")
        rank = vals[0].ndim
        axis = _axis(node.attrs.get("axis", 0), rank, where)
        for v in vals:
            if v.ndim != rank or v.shape[:axis] + v.shape[axis + 1:] != vals[0].shape[:axis] + vals[0].shape[axis + 1:]:
                raise ImportModelError(f"{where}: shapes {[v.shape for v in vals]} do not concatenate on axis {axis}")
        shape = list(vals[0].shape)
        shape[axis] = sum(v.shape[axis] for v in vals)
        ctx.check(where, shape, vals[0].dtype)
        return [np.concatenate([v.astype(vals[0].dtype) for v in vals], axis=axis)]
    if op == "Slice":
        return [np.ascontiguousarray(x[slice_index(node, ins, ctx, x.shape, where)])]
    if op == "Split":
        axis = _axis(node.attrs.get("axis", 0), x.ndim, where)
        sizes = split_sizes(node, ins, ctx, x.shape[axis], where)
        return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    if op == "ConstantOfShape":
        shape = _ints(x, where, "shape") if x is not None else []
        value = node.attrs.get("value")
        value = np.zeros(1, np.float32) if value is None else np.asarray(value).ravel()
        if value.size != 1:
            raise ImportModelError(f"{where}: value must have one element")
        shape = ctx.check(where, shape, value.dtype)
        return [np.full(shape, value[0], value.dtype)]
    if op == "Expand":
        target = _ints(ins[1], where, "shape")
        shape = ctx.check(where, broadcast_shape([x.shape, target], where), x.dtype)
        return [np.array(np.broadcast_to(x, shape))]
    if op == "Tile":
        reps = _ints(ins[1], where, "repeats")
        if len(reps) != x.ndim or any(r < 0 for r in reps):
            raise ImportModelError(f"{where}: repeats {reps} for rank {x.ndim}")
        ctx.check(where, [d * r for d, r in zip(x.shape, reps)], x.dtype)
        return [np.tile(x, reps)]
    if op == "Range":
        start, limit, delta = (np.asarray(v).ravel() for v in ins[:3])
        if start.size != 1 or limit.size != 1 or delta.size != 1:
            raise ImportModelError(f"{where}: start, limit and delta must be scalars")
        s, lim, d = start[0], limit[0], delta[0]
        if d == 0 or not np.all(np.isfinite([s, lim, d])):
            raise ImportModelError(f"{where}: bad range ({s}, {lim}, {d})")
        n = max(int(np.ceil((float(lim) - float(s)) / float(d))), 0)
        ctx.check(where, [n], start.dtype)
        return [(s + np.arange(n) * d).astype(start.dtype)]
    if op == "Where":
        c, a, b = ins
        ctx.check(where, broadcast_shape([c.shape, a.shape, b.shape], where), a.dtype)
        return [np.where(c.astype(bool), a, b).astype(a.dtype)]
    if op == "Clip":
        if ctx.opset < 11:
            lo, hi = node.attrs.get("min"), node.attrs.get("max")
        else:
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else None
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else None
        ctx.check(where, x.shape, x.dtype)
        out = x
        if lo is not None:
            out = np.maximum(out, np.asarray(lo, x.dtype))
        if hi is not None:
            out = np.minimum(out, np.asarray(hi, x.dtype))
        return [out.astype(x.dtype)]
    if op in _REDUCERS:
        axes = _reduce_axes(node, ins, ctx, x.ndim, where)
        if axes is None:
            return [x]
        keep = bool(node.attrs.get("keepdims", 1))
        ctx.check(where, [1 if k in axes else d for k, d in enumerate(x.shape) if keep or k not in axes], x.dtype,
                  work=x.size)
        if op == "ReduceL2":
            out = np.sqrt(np.sum(np.square(x), axis=axes, keepdims=keep))
        elif op == "ReduceSumSquare":
            out = np.sum(np.square(x), axis=axes, keepdims=keep)
        else:
            if x.size == 0 and op in ("ReduceMax", "ReduceMin"):
                raise ImportModelError(f"{where}: reduction of an empty tensor")
            out = _REDUCERS[op](x, axis=axes, keepdims=keep)
        return [np.asarray(out).astype(x.dtype)]
    if op in ("ArgMax", "ArgMin"):
        axis = _axis(node.attrs.get("axis", 0), x.ndim, where)
        if x.shape[axis] == 0:
            raise ImportModelError(f"{where}: empty axis")
        f = np.argmax if op == "ArgMax" else np.argmin
        out = f(x, axis=axis)
        if node.attrs.get("keepdims", 1):
            out = np.expand_dims(out, axis)
        return [out.astype(np.int64)]
    if op == "MatMul":
        a, b = ins
        if a.ndim == 0 or b.ndim == 0:
            raise ImportModelError(f"{where}: MatMul of a scalar")
        a2 = a.reshape(1, -1) if a.ndim == 1 else a
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b
        if a2.shape[-1] != b2.shape[-2]:
            raise ImportModelError(f"{where}: shapes {a.shape} and {b.shape} do not multiply")
        batch = broadcast_shape([a2.shape[:-2], b2.shape[:-2]], where)
        shape = batch + (a2.shape[-2], b2.shape[-1])
        ctx.check(where, shape, a.dtype, work=int(np.prod(shape, dtype=np.int64)) * a2.shape[-1])
        out = np.matmul(a2, b2)
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return [out.astype(a.dtype)]
    if op == "Gemm":
        a, b = ins[0], ins[1]
        if a.ndim != 2 or b.ndim != 2:
            raise ImportModelError(f"{where}: Gemm needs rank-2 A and B")
        a = a.T if node.attrs.get("transA", 0) else a
        b = b.T if node.attrs.get("transB", 0) else b
        if a.shape[1] != b.shape[0]:
            raise ImportModelError(f"{where}: shapes do not multiply")
        shape = (a.shape[0], b.shape[1])
        ctx.check(where, shape, a.dtype, work=shape[0] * shape[1] * a.shape[1])
        out = node.attrs.get("alpha", 1.0) * (a @ b)
        if len(ins) > 2 and ins[2] is not None:
            broadcast_shape([shape, ins[2].shape], where)
            out = out + node.attrs.get("beta", 1.0) * ins[2]
        return [np.asarray(out).astype(a.dtype)]
    if op == "Pad":
        begin, end, mode, value = pad_params(node, ins, ctx, x.ndim, where)
        shape = [d + b + e for d, b, e in zip(x.shape, begin, end)]
        ctx.check(where, shape, x.dtype)
        if any(b < 0 or e < 0 for b, e in zip(begin, end)):
            raise ImportModelError(f"{where}: negative pads are not folded")
        width = list(zip(begin, end))
        if mode == "constant":
            v = 0 if value is None else np.asarray(value).ravel()[0]
            return [np.pad(x, width, mode="constant", constant_values=v)]
        if mode == "reflect" and any((b or e) and (max(b, e) >= d) for d, b, e in zip(x.shape, begin, end)):
            raise ImportModelError(f"{where}: reflect pads longer than the axis")
        return [np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])]
    if op == "NonZero":
        ctx.check(where, (x.ndim, x.size), np.int64)
        return [np.array(np.nonzero(x), np.int64).reshape(x.ndim, -1)]
    if op == "Softmax" or op == "LogSoftmax":
        axis = _axis(node.attrs.get("axis", -1 if ctx.opset >= 13 else 1), x.ndim, where)
        ctx.check(where, x.shape, x.dtype)
        if ctx.opset < 13:   # the input is coerced to 2-D at axis before opset 13
            x2 = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
            e = np.exp(x2 - x2.max(axis=1, keepdims=True))
            out = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
        else:
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            out = e / e.sum(axis=axis, keepdims=True)
        return [np.log(out).astype(x.dtype) if op == "LogSoftmax" else out.astype(x.dtype)]
    if op == "CumSum":
        axis = _axis(int(np.asarray(ins[1]).ravel()[0]), x.ndim, where)
        ctx.check(where, x.shape, x.dtype)
        if node.attrs.get("exclusive", 0) or node.attrs.get("reverse", 0):
            return _fallback(node, ins, ctx)
        return [np.cumsum(x, axis=axis).astype(x.dtype)]
    return _fallback(node, ins, ctx)


def _fallback(node, ins, ctx):
    """Any other op: onnx's reference evaluator, once onnx's shape inference has bounded every output."""
    import onnx
    from onnx import helper, numpy_helper
    where = _where(node)
    if node.op_type in ("If", "Loop", "Scan", "SequenceMap") or node.domain not in ("", "ai.onnx"):
        raise ImportModelError(f"{where}: cannot fold {node.op_type} on constants")
    for v in ins:
        if v is not None:
            ctx.check(where, v.shape, v.dtype)
    names = [f"in{k}" if v is not None else "" for k, v in enumerate(ins)]
    outs = [f"out{k}" if o else "" for k, o in enumerate(node.outputs)]
    proto = helper.make_node(node.op_type, names, outs, domain=node.domain)
    proto.attribute.extend(node.proto.attribute)
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), nm) for nm, v in zip(names, ins) if v is not None]
    g = helper.make_graph([proto], "fold", [], [helper.make_empty_tensor_value_info(o) for o in outs if o],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", ctx.opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - any inference failure means: not folded
        raise ImportModelError(f"{where}: cannot fold {node.op_type} on constants ({str(e).splitlines()[0][:200]})"
                               ) from None
    shapes = {}
    for vi in inferred.graph.output:
        t = vi.type.tensor_type
        if not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim):
            raise ImportModelError(f"{where}: cannot fold {node.op_type}: its output size is not known before "
                                   f"evaluating it")
        shapes[vi.name] = [d.dim_value for d in t.shape.dim]
        ctx.check(where, shapes[vi.name], onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) if t.elem_type
                  else np.float32)
    try:
        from onnx.reference import ReferenceEvaluator
        res = ReferenceEvaluator(m).run(None, {})
    except Exception as e:  # noqa: BLE001
        raise ImportModelError(f"{where}: cannot fold {node.op_type} on constants ({type(e).__name__}: "
                               f"{str(e)[:200]})") from None
    for r, o in zip(res, [o for o in outs if o]):
        if list(np.shape(r)) != shapes[o]:
            raise ImportModelError(f"{where}: folded output shape {np.shape(r)} differs from {shapes[o]}")
    it = iter(res)
    return [np.asarray(next(it)) if o else None for o in outs]
