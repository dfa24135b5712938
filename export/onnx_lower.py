"""The second half of the ONNX importer: the residual graph (the nodes that read run-time values, after binding
and folding) -> a chain of edgelstm layers, with state inputs paired to state outputs.

Values on the data path are *index tensors*: a ``Frame`` is one step's slice of an ONNX tensor whose elements
are elements of the chain's current output, ``idx[p]`` being the IR position of ONNX element p (the time axis, if
any, has size 1 here).  Layout ops (Transpose, Reshape, Squeeze, Unsqueeze, Flatten, Slice, Gather, Split,
Concat, Expand, size-1 reductions) are evaluated on the index arrays with the same folding code as constants, so
the layout of every value follows from the declared input shape and the ops on the path.  A layer that reads a
Frame absorbs its index map into its weights (Dense, LSTM/GRU/RNN input weights: any map; Conv: a channel
permutation), or, where the layer kind needs an exact layout (Conv1D, Pad, Magnitude, the model output), a 0/1
Dense gathers the elements into that layout.  State inputs are index tensors too (``StateIn``: which element of
the packed input tensor), and so are the final states of recurrent nodes (``StateOut``: which IR state element),
so packed states (Slice / Gather / Squeeze / Concat / Stack / Reshape around the cells) pair up element by element.
"""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError
from edgelstm.ir.model import GRU, LSTM, RNN, Dense

from .gate_order import ONNX_GRU, ONNX_LSTM, ONNX_PEEPHOLE, direction_weights, reorder_gates
from .onnx_fold import FoldContext, fold, pad_params
from .onnx_graph import Const, Dyn, conv_geometry

_DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}
# ops that only move elements: evaluated on index arrays
_LAYOUT_OPS = {"Identity", "Dropout", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Gather",
               "Split", "Concat", "Expand", "Tile"}
_ACT_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
_ACT_RANGE = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0), "sigmoid": (0.0, 1.0),
              "tanh": (-1.0, 1.0), "softmax": (0.0, 1.0)}
MAX_GATHER = 4096            # largest frame a 0/1 gather Dense is built for


class _NodeView:
    """The same node with other inputs / outputs (a node lowered as several layers)."""

    def __init__(self, node, inputs, outputs):
        self.op_type, self.name, self.attrs = node.op_type, node.name, node.attrs
        self.inputs, self.outputs = list(inputs), list(outputs)


class Frame:
    """One step of a data-path tensor: IR positions of its elements in the chain's output after layer ``end``."""
    __slots__ = ("idx", "end", "linear", "range")

    def __init__(self, idx, end, *, linear=True, rng=(-np.inf, np.inf)):
        self.idx = np.asarray(idx, np.int64)
        self.end = end
        self.linear = linear          # no other reader since the layer output (fusing into the layer is safe)
        self.range = rng              # bounds of the values (for Clip)


class StateIn:
    """Elements of a state input: ``idx[p]`` = flat position in input ``name``."""
    __slots__ = ("idx", "name")

    def __init__(self, idx, name):
        self.idx = np.asarray(idx, np.int64)
        self.name = name


class StateOut:
    """Final-state elements: ``ids[p]`` = global id of an IR state element (-1: not a state)."""
    __slots__ = ("ids", "frame")

    def __init__(self, ids, frame=None):
        self.ids = np.asarray(ids, np.int64)
        self.frame = frame            # the same values as a data Frame (a one-step graph's Y_h), or None


class _Square:
    __slots__ = ("frame",)

    def __init__(self, frame):
        self.frame = frame


class _SumSq:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


def _pos_layout(length, channels):
    """Index tensor (channels, length) of a channels-last (length, channels) IR frame: l * channels + c."""
    return np.arange(length)[None, :] * channels + np.arange(channels)[:, None]


class Lowering:
    def __init__(self, trace, *, data: str, states: list[str], lengths: str | None, t_world: int | None,
                 where: str):
        self.t = trace
        self.where = where
        self.data = data
        self.state_names = states
        self.lengths = lengths
        self.tw = t_world
        self.layers: list = []
        self.epoch = 0                     # bumped by every layer added or re-laid-out: a Frame of an older epoch is stale
        self.initial: list = []           # per layer: per direction dict of initial state arrays, or None
        self.state_ids: dict = {}          # (layer, direction, name) -> first global id
        self.n_ids = 0
        self.feeds: dict = {}              # state input name -> {flat element: global id}
        self.uses_lengths = False
        self.env: dict = {}
        self.ctx = FoldContext(opset=trace.ctx.opset)
        self.consumers: dict = {}
        for node in trace.residual:
            for n in node.inputs:
                if n:
                    self.consumers[n] = self.consumers.get(n, 0) + 1
        for n in trace.output_names:
            g = trace.outputs[trace.output_names.index(n)]
            self.consumers[g] = self.consumers.get(g, 0) + 1
        x = trace.vals[data]
        self.in_size = self._frame_size(x, data)
        self.env[data] = Frame(np.arange(int(np.prod(x.shape))).reshape(x.shape), 0)
        for s in states:
            v = trace.vals[s]
            self.env[s] = StateIn(np.arange(int(np.prod(v.shape))).reshape(v.shape), s)
            self.feeds[s] = {}
        if lengths:
            self.env[lengths] = ("lengths",)

    # ------------------------------------------------------------------ helpers
    def t_axis(self, name):
        """The time axis of value ``name`` (None if it has none)."""
        v = self.t.vals.get(name)
        if self.tw is None or not isinstance(v, Dyn):
            return None
        base, tw = v.shapes[0], v.shapes[self.tw]
        diff = [k for k, (a, b) in enumerate(zip(base, tw)) if a != b]
        if len(base) != len(tw) or len(diff) > 1 or (diff and base[diff[0]] != 1):
            raise ImportModelError(f"{self.where}: value {name!r} merges the time axis with other axes "
                                   f"({base} at T=1, {tw} at T=2)")
        return diff[0] if diff else None

    def _frame_size(self, v, name):
        n = int(np.prod(v.shape))
        if n < 1:
            raise ImportModelError(f"{self.where}: value {name!r} is empty")
        return n

    def _n_chain(self):
        return self.layers[-1].output_size if self.layers else self.in_size

    def _fusable(self, fr: Frame, name: str) -> bool:
        return fr.end == self.epoch and fr.linear and self.consumers.get(name, 0) == 1 and \
            fr.idx.size == self._n_chain() and np.array_equal(np.sort(fr.idx.ravel()), np.arange(fr.idx.size))

    def _chain_end(self, fr: Frame, where):
        if fr.end != self.epoch:
            raise ImportModelError(f"{where}: reads the output of an earlier layer after later layers were "
                                   f"added (a branch or skip connection on the data path is not supported)")

    def _add(self, layer, initial=None):
        self.layers.append(layer)
        self.initial.append(initial)
        self.epoch += 1
        return self.epoch

    def _gather(self, fr: Frame, want, where, *, rng=None):
        """Make the chain output hold ``fr``'s elements at IR positions ``want`` (same shape as fr.idx): no-op if
        they are there already, else a 0/1 Dense."""
        self._chain_end(fr, where)
        want = np.asarray(want, np.int64)
        n_out = int(want.max()) + 1 if want.size else 0
        if np.array_equal(fr.idx, want) and n_out == self._n_chain():
            return fr
        flat_w, flat_i = want.ravel(), fr.idx.ravel()
        if n_out != len(np.unique(flat_w)) or n_out != flat_w.size:
            raise ImportModelError(f"{where}: needs a layout the data is not in")
        n_in = self._n_chain()
        if max(n_in, n_out) > MAX_GATHER:
            raise ImportModelError(f"{where}: the data would have to be reordered ({n_in} -> {n_out} elements); "
                                   f"no layer kind reorders frames that large")
        w = np.zeros((n_out, n_in), np.float32)
        w[flat_w, flat_i] = 1.0
        self._add(Dense(input_size=n_in, output_size=n_out, directions=[{"w": w, "b": np.zeros(n_out, np.float32)}]))
        return Frame(want, self.epoch, rng=fr.range if rng is None else rng)

    def _absorb_columns(self, w_onnx, fr: Frame, where):
        """w_onnx (O, F) over the ONNX feature elements (fr.idx, shape (F,)) -> (O, n_chain) over IR positions."""
        self._chain_end(fr, where)
        w = np.zeros((w_onnx.shape[0], self._n_chain()), np.float64)
        np.add.at(w.T, fr.idx.ravel(), np.asarray(w_onnx, np.float64).T)
        return w.astype(np.float32)

    def _features(self, fr: Frame, name, where):
        """The frame's elements as one feature vector: every axis but the last (and the time axis) of size 1."""
        shape = fr.idx.shape
        ta = self.t_axis(name)
        other = [d for k, d in enumerate(shape[:-1]) if k != ta]
        if any(d != 1 for d in other) or (ta is not None and ta == len(shape) - 1):
            return None
        return fr.idx.reshape(-1)

    # ------------------------------------------------------------------ the walk
    def run(self):
        for node in self.t.residual:
            self._node(node)

    def finish(self):
        """A Conv1D with one output position is a Dense over its input (the kernel's taps that reach the input,
        reflected or dropped at the padding): exact, and the cheaper layer."""
        for k, layer in enumerate(self.layers):
            if layer.kind != "conv1d" or layer.out_length != 1 or layer.activation not in ("none", "relu", "sigmoid",
                                                                                           "tanh"):
                continue
            p = layer.directions[0]
            w = np.asarray(p["w"], np.float64)
            O, K, Ig = w.shape
            C, L = layer.in_channels, layer.length
            dense = np.zeros((O, L * C))
            per_group = O // layer.groups
            for t in range(K):
                pos = t * layer.dilation - layer.pad_left
                if pos < 0 or pos >= L:
                    if layer.pad_mode != "reflect":
                        continue
                    pos = -pos if pos < 0 else 2 * (L - 1) - pos
                for o in range(O):
                    g = o // per_group
                    dense[o, pos * C + g * Ig:pos * C + (g + 1) * Ig] += w[o, t]
            self.layers[k] = Dense(input_size=L * C, output_size=O, activation=layer.activation,
                                   directions=[{"w": dense.astype(np.float32), "b": np.asarray(p["b"], np.float32)}])

    def _node(self, node):
        op = node.op_type
        where = f"{self.where}: node {node.name or '?'} ({op})"
        ins = [self._val(n) for n in node.inputs]
        if any(isinstance(v, tuple) for v in ins) and op not in ("LSTM", "GRU", "RNN"):
            raise ImportModelError(f"{where}: sequence_lens may only feed the recurrent node")
        if op in ("LSTM", "GRU", "RNN"):
            return self._recurrent(node, ins, where)
        if op in _LAYOUT_OPS or (op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin") and
                                 self._reduces_unit_axes(node, ins)):
            return self._layout(node, ins, where)
        if op in ("Cast", "CastLike"):
            if self.t.vals[node.outputs[0]].dtype.kind != "f":
                raise ImportModelError(f"{where}: casts the data to {self.t.vals[node.outputs[0]].dtype}")
            return self._set(node.outputs[0], ins[0], node.inputs[0])
        noop = self._noop(op, ins)
        if noop is not None:      # x + 0, x * 1, ... (an exporter's leftovers): the value itself
            return self._set(node.outputs[0], noop, node.inputs[next(k for k, v in enumerate(ins) if v is noop)])
        if any(isinstance(v, StateIn) for v in ins):
            raise ImportModelError(f"{where}: uses the state input {next(v.name for v in ins if isinstance(v, StateIn))!r} "
                                   f"as data (a state input may only feed a recurrent layer's initial state)")
        if any(isinstance(v, StateOut) and v.frame is None for v in ins):
            raise ImportModelError(f"{where}: reads a final state (Y_h / Y_c) as data; only per-step outputs can feed "
                                   f"further layers")
        ins = [v.frame if isinstance(v, StateOut) else v for v in ins]
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ImportModelError(f"{where}: {op} on the data path has no edgelstm layer kind")
        handler(node, ins, where)

    @staticmethod
    def _noop(op, ins):
        if op not in ("Add", "Sub", "Mul", "Div") or len(ins) != 2:
            return None
        for k in (0, 1):
            x, c = ins[k], ins[1 - k]
            if isinstance(c, np.ndarray) and isinstance(x, (Frame, StateOut, StateIn)) and c.size and \
                    c.ndim <= np.ndim(x.ids if isinstance(x, StateOut) else x.idx) and \
                    all(d == 1 for d in c.shape) and c.dtype.kind == "f":
                v = float(c.ravel()[0])
                if (op in ("Add", "Sub") and v == 0 and (k == 0 or op == "Add")) or \
                        (op in ("Mul", "Div") and v == 1 and (k == 0 or op == "Mul")):
                    return x
        return None

    def _val(self, name):
        if not name:
            return None
        if name in self.env:
            return self.env[name]
        v = self.t.vals.get(name)
        if isinstance(v, Const):
            return v.vals[0]
        raise ImportModelError(f"{self.where}: value {name!r} is computed by an op edgelstm cannot map")

    def _set(self, name, value, src=None):
        if isinstance(value, Frame) and src is not None:
            value = Frame(value.idx, value.end, linear=value.linear and self.consumers.get(src, 0) == 1,
                          rng=value.range)
        self.env[name] = value

    def _reduces_unit_axes(self, node, ins):
        x = ins[0]
        if not isinstance(x, (Frame, StateIn, StateOut)):
            return False
        out = self.t.vals[node.outputs[0]]
        return isinstance(out, Dyn) and int(np.prod(out.shape)) == (x.idx if not isinstance(x, StateOut)
                                                                     else x.ids).size

    # ------------------------------------------------------------------ layout ops on index tensors
    def _layout(self, node, ins, where):
        op = node.op_type
        if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"):
            x = ins[0]
            shape = self.t.vals[node.outputs[0]].shape
            if isinstance(x, StateOut):
                return self._put_state(node, [x.ids.reshape(shape)],
                                       None if x.frame is None else [Frame(x.frame.idx.reshape(shape), x.frame.end,
                                                                           linear=False, rng=x.frame.range)])
            return self._put(node, [x.idx.reshape(shape)], x, where)
        if any(isinstance(v, (_Square, _SumSq)) for v in ins):
            raise ImportModelError(f"{where}: reshapes an intermediate of a pattern edgelstm maps as a whole")
        tensors = [v for v in ins if isinstance(v, (Frame, StateIn, StateOut))]
        if op == "Concat" and any(isinstance(v, np.ndarray) for v in ins):
            raise ImportModelError(f"{where}: concatenates run-time and constant values")
        if any(isinstance(v, StateOut) for v in tensors):
            if any(isinstance(v, StateIn) for v in tensors):
                raise ImportModelError(f"{where}: mixes state inputs and final states")
            arrs = [v.ids if isinstance(v, StateOut) else np.full(v.idx.shape, -1) if isinstance(v, Frame) else v
                    for v in ins]
            out = fold(node, arrs, self.ctx)
            frames = None
            if all(isinstance(v, Frame) or v.frame is not None for v in tensors):
                frames = self._fold_frames(node, [v.frame if isinstance(v, StateOut) else v for v in ins], where)
            return self._put_state(node, out, frames)
        if any(isinstance(v, StateIn) for v in tensors):
            if len({getattr(v, "name", None) for v in tensors}) != 1:
                if op == "Concat" and any(isinstance(v, Frame) for v in tensors):
                    raise ImportModelError(f"{where}: concatenates a state input with the data (a streaming cache "
                                           f"of past frames, e.g. for a convolution along time): not supported")
                raise ImportModelError(f"{where}: combines different state inputs or a state input and the data")
            out = fold(node, [v.idx if isinstance(v, StateIn) else v for v in ins], self.ctx)
            return self._put(node, out, tensors[0], where)
        if len(tensors) > 1:
            for v in tensors:
                self._chain_end(v, where)
        if self.tw is not None and any(isinstance(self._val(n), Frame) and self.t_axis(n) is not None
                                       for n in node.inputs if n) and \
                any(o and self.t_axis(o) is None for o in node.outputs):
            raise ImportModelError(f"{where}: the data is sliced per time step: an unrolled recurrence over time "
                                   f"(e.g. torch's dynamo exporter on nn.RNN) is not supported; export with the "
                                   f"TorchScript-based exporter (dynamo=False) to get an ONNX RNN node")
        out = fold(node, [v.idx if isinstance(v, Frame) else v for v in ins], self.ctx)
        return self._put(node, out, tensors[0], where)

    def _fold_frames(self, node, ins, where):
        arrs = [v.idx if isinstance(v, Frame) else v for v in ins]
        out = fold(node, arrs, self.ctx)
        f = next(v for v in ins if isinstance(v, Frame))
        return [Frame(o, f.end, linear=False, rng=f.range) for o in out]

    def _put(self, node, outs, ref, where):
        for o, arr in zip(node.outputs, outs):
            if not o:
                continue
            if isinstance(ref, StateIn):
                self.env[o] = StateIn(arr, ref.name)
            else:
                self._set(o, Frame(arr, ref.end, linear=ref.linear, rng=ref.range), node.inputs[0])

    def _put_state(self, node, outs, frames):
        for k, (o, arr) in enumerate(zip(node.outputs, outs)):
            if o:
                self.env[o] = StateOut(arr, None if frames is None else frames[k])

    # ------------------------------------------------------------------ element-wise ops
    def _activation(self, node, x, act, where):
        name = node.inputs[0]
        if not isinstance(x, Frame):
            raise ImportModelError(f"{where}: applies {act} to a value that is not a layer output")
        layer = self.layers[-1] if self.layers else None
        lo, hi = _ACT_RANGE[act]
        if layer is not None and self._fusable(x, name) and getattr(layer, "activation", None) == "none" and \
                (layer.kind == "dense" and act in ("relu", "sigmoid", "tanh") or
                 layer.kind == "conv1d" and act in ("relu", "relu6", "sigmoid", "tanh")):
            layer.activation = act
            out = Frame(x.idx, x.end, rng=(lo, hi))
        else:
            self._chain_end(x, where)
            fr = self._gather(x, np.arange(x.idx.size).reshape(x.idx.shape), where) \
                if not self._covers(x) else x
            from edgelstm.ir.frontend import Activation
            self._add(Activation(size=self._n_chain(), activation=act))
            out = Frame(fr.idx, self.epoch, rng=(lo, hi))
        self._set(node.outputs[0], out)

    def _covers(self, x: Frame) -> bool:
        """Does ``x`` hold every element of the chain output exactly once (an element-wise layer may run)?"""
        return x.idx.size == self._n_chain() and np.array_equal(np.sort(x.idx.ravel()), np.arange(x.idx.size))

    def _op_Relu(self, node, ins, where):
        self._activation(node, ins[0], "relu", where)

    def _op_Sigmoid(self, node, ins, where):
        self._activation(node, ins[0], "sigmoid", where)

    def _op_Tanh(self, node, ins, where):
        self._activation(node, ins[0], "tanh", where)

    def _op_Clip(self, node, ins, where):
        x = ins[0]
        if self.ctx.opset < 11:
            lo, hi = node.attrs.get("min", -np.inf), node.attrs.get("max", np.inf)
        else:
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else -np.inf
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else np.inf
        if not all(isinstance(v, (np.ndarray, float, int)) for v in (lo, hi)):
            raise ImportModelError(f"{where}: Clip bounds must be constants")
        lo, hi = float(np.asarray(lo).ravel()[0]), float(np.asarray(hi).ravel()[0])
        if not isinstance(x, Frame):
            raise ImportModelError(f"{where}: Clip of a value that is not a layer output")
        if x.range[0] >= lo and x.range[1] <= hi:
            # the values are inside [lo, hi] already (a tanh / sigmoid / LSTM output): Clip changes nothing
            return self._set(node.outputs[0], x, node.inputs[0])
        if lo == 0 and hi == 6:
            return self._activation(node, x, "relu6", where)
        if lo == 0 and hi == np.inf:
            return self._activation(node, x, "relu", where)
        if not (np.isfinite(lo) or np.isfinite(hi)) or lo > hi or (not np.isfinite(lo) and np.isfinite(hi)) and \
                x.range[1] <= hi:
            raise ImportModelError(f"{where}: Clip to [{lo:g}, {hi:g}]")
        # clip(x, lo, hi) = lo + s * relu6((x - lo) / s) with s = (hi - lo) / 6, or lo + relu(x - lo) without hi:
        # affine maps around a relu / relu6 layer (exact in float up to one rounding of the shift)
        if not np.isfinite(lo):
            # min(x, hi) = hi - relu(hi - x)
            self._clip_chain(node, x, -1.0, hi, "relu", -1.0, hi, where)
        elif np.isfinite(hi):
            sc = (hi - lo) / 6.0
            self._clip_chain(node, x, 1.0 / sc, -lo / sc, "relu6", sc, lo, where)
        else:
            self._clip_chain(node, x, 1.0, -lo, "relu", 1.0, lo, where)

    def _clip_chain(self, node, x, a1, b1, act, a2, b2, where):
        """y = a2 * act(a1 * x + b1) + b2 as [affine, activation, affine] layers."""
        out = node.outputs[0]
        tmp = [f"{out}__clip{k}" for k in range(2)]
        saved = self.t.vals.get(out)
        self.t.vals[tmp[0]] = self.t.vals[tmp[1]] = saved
        self.consumers[tmp[0]] = self.consumers[tmp[1]] = 1
        step = _NodeView(node, [node.inputs[0]], [tmp[0]])
        self._affine(step, x, a1, b1, where)
        self._activation(_NodeView(node, [tmp[0]], [tmp[1]]), self.env[tmp[0]], act, where)
        y = self.env[tmp[1]]
        self._affine(_NodeView(node, [tmp[1]], [out]), y, a2, b2, where)
        lo, hi = (b2, a2 * 6 + b2) if act == "relu6" else ((b2, np.inf) if a2 > 0 else (-np.inf, b2))
        self.env[out].range = (lo, hi)

    def _op_Softmax(self, node, ins, where):
        x = ins[0]
        feats = self._features(x, node.inputs[0], where) if isinstance(x, Frame) else None
        axis = node.attrs.get("axis", -1 if self.ctx.opset >= 13 else 1) % x.idx.ndim
        if feats is None or (axis != x.idx.ndim - 1 and x.idx.shape[axis] != 1 and self.ctx.opset >= 13):
            raise ImportModelError(f"{where}: Softmax must run over the feature axis")
        layer = self.layers[-1] if self.layers else None
        if layer is not None and layer.kind == "dense" and layer.activation == "none" and \
                self._fusable(x, node.inputs[0]) and np.array_equal(feats, np.arange(feats.size)):
            layer.activation = "softmax"
            return self._set(node.outputs[0], Frame(x.idx, x.end, rng=(0.0, 1.0)))
        n = self._n_chain()
        w = self._absorb_columns(np.eye(feats.size, dtype=np.float32), Frame(feats, x.end), where)
        self._add(Dense(input_size=n, output_size=feats.size, activation="softmax",
                        directions=[{"w": w, "b": np.zeros(feats.size, np.float32)}]))
        self._set(node.outputs[0], Frame(np.arange(feats.size).reshape(x.idx.shape), self.epoch,
                                         rng=(0.0, 1.0)))

    def _affine(self, node, x: Frame, scale, shift, where):
        """y = x * scale + shift element-wise (scale / shift broadcast to x's shape): folded into the previous
        Dense / Conv1D where that is exact, else a diagonal Dense."""
        name = node.inputs[0] if isinstance(self._val(node.inputs[0]), Frame) else node.inputs[1]
        shape = x.idx.shape
        try:
            s = np.broadcast_to(np.asarray(scale, np.float64), shape).ravel()
            b = np.broadcast_to(np.asarray(shift, np.float64), shape).ravel()
        except ValueError:
            raise ImportModelError(f"{where}: the constant {np.shape(scale)} / {np.shape(shift)} widens the data "
                                   f"{shape}") from None
        out_shape = self.t.vals[node.outputs[0]].shape
        if tuple(out_shape) != tuple(shape) and int(np.prod(out_shape)) != x.idx.size:
            raise ImportModelError(f"{where}: the constant broadcasts the data to {out_shape}")
        layer = self.layers[-1] if self.layers else None
        if layer is not None and self._fusable(x, name) and getattr(layer, "activation", None) == "none" and \
                layer.kind in ("dense", "conv1d"):
            s_ir, b_ir = np.zeros(x.idx.size), np.zeros(x.idx.size)
            s_ir[x.idx.ravel()] = s
            b_ir[x.idx.ravel()] = b
            p = layer.directions[0]
            if layer.kind == "dense":
                p["w"] = (p["w"] * s_ir[:, None]).astype(np.float32)
                p["b"] = (p["b"] * s_ir + b_ir).astype(np.float32)
                return self._set(node.outputs[0], Frame(x.idx.reshape(out_shape), x.end))
            C = layer.out_channels
            s_c, b_c = s_ir.reshape(-1, C), b_ir.reshape(-1, C)
            if np.all(s_c == s_c[:1]) and np.all(b_c == b_c[:1]):      # per channel: exact in the conv
                p["w"] = (p["w"] * s_c[0][:, None, None]).astype(np.float32)
                p["b"] = (p["b"] * s_c[0] + b_c[0]).astype(np.float32)
                return self._set(node.outputs[0], Frame(x.idx.reshape(out_shape), x.end))
        self._chain_end(x, where)
        n = self._n_chain()
        if n > MAX_GATHER:
            raise ImportModelError(f"{where}: an element-wise affine op on a frame of {n} elements that cannot be "
                                   f"folded into the previous layer")
        w = np.zeros((x.idx.size, n), np.float64)
        w[np.arange(x.idx.size), x.idx.ravel()] = s
        self._add(Dense(input_size=n, output_size=x.idx.size,
                        directions=[{"w": w.astype(np.float32), "b": b.astype(np.float32)}]))
        self._set(node.outputs[0], Frame(np.arange(x.idx.size).reshape(out_shape), self.epoch))

    def _binary(self, node, ins, where):
        a, b = ins[0], ins[1]
        op = node.op_type
        fa, fb = isinstance(a, Frame), isinstance(b, Frame)
        if fa and fb:
            return None
        x, c = (a, b) if fa else (b, a)
        if not isinstance(x, Frame) or not isinstance(c, np.ndarray):
            return None
        c = c.astype(np.float64)
        if op == "Add":
            return self._affine(node, x, 1.0, c, where)
        if op == "Sub":
            return self._affine(node, x, 1.0, -c, where) if fa else self._affine(node, x, -1.0, c, where)
        if op == "Mul":
            return self._affine(node, x, c, 0.0, where)
        if op == "Div" and fa:
            if np.any(c == 0):
                raise ImportModelError(f"{where}: division by zero")
            return self._affine(node, x, 1.0 / c, 0.0, where)
        raise ImportModelError(f"{where}: {op} of a constant by the data has no layer kind")

    def _op_Add(self, node, ins, where):
        a, b = ins
        if isinstance(a, _Square) and isinstance(b, _Square):
            return self._set(node.outputs[0], _SumSq(a.frame, b.frame))
        if self._binary(node, ins, where) is None and not self._handled(node):
            raise ImportModelError(f"{where}: adds two run-time values (a residual connection or an unrolled cell "
                                   f"edgelstm does not recognize)")

    def _handled(self, node):
        return node.outputs[0] in self.env

    def _op_Sub(self, node, ins, where):
        if self._binary(node, ins, where) is None and not self._handled(node):
            raise ImportModelError(f"{where}: subtracts two run-time values")

    def _op_Div(self, node, ins, where):
        if self._binary(node, ins, where) is None and not self._handled(node):
            raise ImportModelError(f"{where}: divides two run-time values")

    def _op_Mul(self, node, ins, where):
        a, b = ins
        if isinstance(a, Frame) and isinstance(b, Frame) and node.inputs[0] == node.inputs[1]:
            return self._set(node.outputs[0], _Square(a))
        if self._binary(node, ins, where) is None and not self._handled(node):
            raise ImportModelError(f"{where}: multiplies two run-time values")

    def _op_Neg(self, node, ins, where):
        self._affine(node, ins[0], -1.0, 0.0, where)

    def _op_Pow(self, node, ins, where):
        x, e = ins
        if isinstance(x, Frame) and isinstance(e, np.ndarray) and e.size == 1 and float(e.ravel()[0]) == 2.0:
            return self._set(node.outputs[0], _Square(x))
        raise ImportModelError(f"{where}: Pow is only supported as the square of an STFT magnitude "
                               f"(sqrt(a^2 + b^2))")

    def _op_Sqrt(self, node, ins, where):
        s = ins[0]
        if not isinstance(s, _SumSq):
            raise ImportModelError(f"{where}: Sqrt is only supported as an STFT magnitude (sqrt(a^2 + b^2) over two "
                                   f"halves of a conv's channels)")
        a, b = s.a, s.b
        self._chain_end(a, where)
        self._chain_end(b, where)
        name = node.outputs[0]
        shape = self.t.vals[name].shape
        bad = ImportModelError(f"{where}: sqrt(a^2 + b^2) where a and b are not the two channel halves of the "
                               f"previous layer's output")
        if a.idx.shape != b.idx.shape or not a.idx.size:
            raise bad
        # element p pairs a[p] = (l, c) with b[p] = (l, C + c) of the (length, 2C) chain output, whatever the
        # ONNX layout (channel-major as torch exports, or channels-last)
        C = int(b.idx.ravel()[0] - a.idx.ravel()[0])
        if C < 0:
            a, b, C = b, a, -C
        if C < 1 or not np.all(b.idx - a.idx == C):
            raise bad
        self._crop_conv([a, b], 2 * C, where)
        n = self._n_chain()
        L = n // (2 * C)
        l_pos, c_pos = a.idx // (2 * C), a.idx % (2 * C)
        out = l_pos * C + c_pos
        if n != 2 * C * L or np.any(c_pos >= C) or a.idx.size != C * L or len(np.unique(out)) != C * L:
            raise bad
        from edgelstm.ir.frontend import Magnitude
        self._add(Magnitude(length=L, channels=C))
        self._set(name, Frame(out.reshape(shape), self.epoch, rng=(0.0, np.inf)))

    def _crop_conv(self, frames, C, where):
        """Frames that read only positions [d, L - e) of the previous Conv1D's (L, C) output: drop the unread
        positions from the conv itself (d * stride leading / e * stride trailing zero taps on its kernel), so no
        gather is needed (silero-vad's STFT drops its first window)."""
        layer = self.layers[-1] if self.layers else None
        if layer is None or layer.kind != "conv1d" or layer.out_channels != C or layer.dilation != 1 or \
                layer.activation != "none" or any(f.end != self.epoch for f in frames):
            return
        pos = np.concatenate([f.idx.ravel() for f in frames]) // C
        L = layer.out_length
        d, e = int(pos.min()), L - 1 - int(pos.max())
        if d == 0 and e == 0:
            return
        p = layer.directions[0]
        w = p["w"]
        s = layer.stride
        w2 = np.zeros((w.shape[0], w.shape[1] + (d + e) * s, w.shape[2]), np.float32)
        w2[:, d * s:d * s + w.shape[1]] = w
        layer.kernel_size = w2.shape[1]
        p["w"] = w2
        if layer.out_length != L - d - e:
            raise ImportModelError(f"{where}: internal: cropping the conv gave {layer.out_length} positions")
        self.epoch += 1
        for f in frames:
            f.idx = f.idx - d * C
            f.end = self.epoch

    def _op_BatchNormalization(self, node, ins, where):
        x, scale, bias, mean, var = ins[:5]
        if not isinstance(x, Frame) or not all(isinstance(v, np.ndarray) for v in (scale, bias, mean, var)):
            raise ImportModelError(f"{where}: BatchNormalization needs constant parameters")
        if node.attrs.get("training_mode", 0):
            raise ImportModelError(f"{where}: training_mode BatchNormalization")
        eps = node.attrs.get("epsilon", 1e-5)
        s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        b = bias.astype(np.float64) - mean.astype(np.float64) * s
        shape = (-1,) + (1,) * (x.idx.ndim - 2)
        self._affine(node, x, s.reshape(shape), b.reshape(shape), where)

    # ------------------------------------------------------------------ Dense
    def _op_MatMul(self, node, ins, where):
        x, w = ins
        if not isinstance(x, Frame) or not isinstance(w, np.ndarray) or w.ndim != 2:
            raise ImportModelError(f"{where}: only data @ constant (I, O) matrix is supported")
        self._dense(node, x, w.T.astype(np.float64), np.zeros(w.shape[1]), where)

    def _op_Gemm(self, node, ins, where):
        a = node.attrs
        x, w = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        if a.get("transA", 0) or not isinstance(x, Frame) or not isinstance(w, np.ndarray):
            raise ImportModelError(f"{where}: only Gemm(data, constant W[, constant C]) without transA")
        w = (w if a.get("transB", 0) else w.T).astype(np.float64) * a.get("alpha", 1.0)
        if c is None:
            c = np.zeros(w.shape[0])
        if not isinstance(c, np.ndarray) or c.size not in (1, w.shape[0]):
            raise ImportModelError(f"{where}: Gemm bias must be a constant vector")
        self._dense(node, x, w, np.broadcast_to(c.astype(np.float64).ravel() * a.get("beta", 1.0), (w.shape[0],)),
                    where)

    def _dense(self, node, x: Frame, w, b, where):
        """w (O, I) over the last axis of x."""
        feats = self._features(x, node.inputs[0], where)
        if feats is None:
            return self._per_position(node, x, w, b, where)
        if feats.size != w.shape[1]:
            raise ImportModelError(f"{where}: weight expects {w.shape[1]} features, the data has {feats.size}")
        wi = self._absorb_columns(w, Frame(feats, x.end), where)
        self._add(Dense(input_size=self._n_chain(), output_size=w.shape[0],
                        directions=[{"w": wi, "b": np.asarray(b, np.float32)}]))
        shape = self.t.vals[node.outputs[0]].shape
        self._set(node.outputs[0], Frame(np.arange(w.shape[0]).reshape(shape), self.epoch))

    def _per_position(self, node, x, w, b, where):
        """A matrix over the last axis of a (length, channels) frame: a kernel-1 Conv1D."""
        shape = x.idx.shape
        ta = self.t_axis(node.inputs[0])
        lead = [d for k, d in enumerate(shape[:-1]) if k != ta and d != 1]
        if len(lead) != 1:
            raise ImportModelError(f"{where}: a matrix product over data of shape {shape}")
        L, C = lead[0], shape[-1]
        self._gather(x, (np.arange(L)[:, None] * C + np.arange(C)[None, :]).reshape(shape), where)
        from edgelstm.ir.frontend import Conv1D
        O = w.shape[0]
        self._add(Conv1D(length=L, in_channels=C, out_channels=O, kernel_size=1,
                         directions=[{"w": w.reshape(O, 1, C).astype(np.float32), "b": np.asarray(b, np.float32)}]))
        oshape = self.t.vals[node.outputs[0]].shape
        self._set(node.outputs[0], Frame((np.arange(L)[:, None] * O + np.arange(O)[None, :]).reshape(oshape),
                                         self.epoch))

    # ------------------------------------------------------------------ conv front end
    def _op_Pad(self, node, ins, where):
        x = ins[0]
        if not isinstance(x, Frame):
            raise ImportModelError(f"{where}: Pad of a value that is not a layer output")
        shape = x.idx.shape
        begin, end, mode, value = pad_params(node, ins, self.ctx, len(shape), where)
        axes = [k for k in range(len(shape)) if begin[k] or end[k]]
        ta = self.t_axis(node.inputs[0])
        if not axes:
            return self._set(node.outputs[0], x, node.inputs[0])
        if len(axes) != 1 or axes[0] == ta or min(begin + end) < 0:
            raise ImportModelError(f"{where}: pads {begin}/{end}: only padding along one axis within a step is "
                                   f"supported")
        if mode == "constant" and value is not None and np.any(np.asarray(value) != 0):
            raise ImportModelError(f"{where}: constant padding with {np.asarray(value).ravel()[0]} (only zeros)")
        if mode not in ("constant", "reflect"):
            raise ImportModelError(f"{where}: Pad mode {mode!r} (only constant zeros and reflect)")
        a = axes[0]
        L = shape[a]
        C = int(np.prod(shape)) // L
        want = np.moveaxis((np.arange(L)[:, None] * C + np.arange(C)[None, :]).reshape(
            (L,) + tuple(d for k, d in enumerate(shape) if k != a)), 0, a)
        self._gather(x, want, where)
        from edgelstm.ir.frontend import Pad
        mode = "zeros" if mode == "constant" else "reflect"
        self._add(Pad(length=L, channels=C, left=begin[a], right=end[a], mode=mode))
        Lo = L + begin[a] + end[a]
        out_shape = self.t.vals[node.outputs[0]].shape
        out = np.moveaxis((np.arange(Lo)[:, None] * C + np.arange(C)[None, :]).reshape(
            (Lo,) + tuple(d for k, d in enumerate(shape) if k != a)), 0, a)
        lo, hi = x.range
        self._set(node.outputs[0], Frame(out.reshape(out_shape), self.epoch, rng=(min(lo, 0), max(hi, 0))))

    def _op_Conv(self, node, ins, where):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        if not isinstance(x, Frame) or not isinstance(w, np.ndarray) or (b is not None and not isinstance(b, np.ndarray)):
            raise ImportModelError(f"{where}: Conv needs constant weights and bias")
        name = node.inputs[0]
        shape = x.idx.shape
        ta = self.t_axis(name)
        if len(shape) not in (3, 4):
            raise ImportModelError(f"{where}: Conv of rank {len(shape)}")
        spatial = list(range(2, len(shape)))
        kernel = list(w.shape[2:])
        geo = conv_geometry(node.attrs, [shape[k] for k in spatial], kernel, where)
        # a 2-D conv whose second spatial axis is a unit axis with a kernel of 1 is a 1-D conv
        if len(spatial) == 2:
            unit = [k for k in (0, 1) if shape[spatial[k]] == 1 and kernel[k] == 1 and geo[k][2] == geo[k][3] == 0
                    and spatial[k] != ta]
            if not unit:
                raise ImportModelError(f"{where}: a 2-D convolution (only 1-D convs, or 2-D with a unit axis)")
            keep = 1 - unit[0]
            spatial, kernel, geo = [spatial[keep]], [kernel[keep]], [geo[keep]]
            w = w.reshape(w.shape[:2] + (kernel[0],))
        if ta is not None and ta == 1:
            raise ImportModelError(f"{where}: the channel axis is the time axis")
        if shape[0] != 1 and ta != 0:
            raise ImportModelError(f"{where}: the conv's batch axis holds data ({shape[0]})")
        stride, dil, pb, pe, L_out = geo[0]
        C, L = shape[1], shape[spatial[0]]
        O, K = w.shape[0], kernel[0]
        group = node.attrs.get("group", 1)
        if b is None:
            b = np.zeros(O)
        if spatial[0] == ta:
            # along the time axis: only a kernel of 1 (a per-step matrix) is a per-step layer
            if K != 1 or stride != 1 or pb or pe or group != 1:
                raise ImportModelError(f"{where}: a convolution along the time axis (kernel {K}, stride {stride}); "
                                       f"edgelstm layers work within one step")
            return self._conv_as_dense(node, x, w[:, :, 0], b, ta, where)
        if group not in (1, C) or O % group:
            raise ImportModelError(f"{where}: group={group} (only 1 or depthwise, group = in_channels = {C})")
        # the IR reads channels-last (length, channels): gather the frame into it unless it is there already
        idx = x.idx.reshape(C, L) if len(shape) == 3 else np.moveaxis(x.idx, spatial[0], -1).reshape(C, L)
        perm = None
        if group == 1 and L == 1 and self._covers(x) and x.end == self.epoch:
            perm = idx[:, 0]              # a channel permutation: absorbed into the weights
        else:
            want = _pos_layout(L, C)
            if len(shape) == 3:
                self._gather(x, want.reshape(shape), where)
            else:
                self._gather(x, np.moveaxis(want.reshape([C] + [1] * (len(shape) - 3) + [L])
                                            .reshape(tuple(d for k, d in enumerate(shape) if k != spatial[0]) +
                                                     (L,)), -1, spatial[0]), where)
        wt = np.transpose(w, (0, 2, 1)).astype(np.float64)          # (O, K, C/g)
        if perm is not None:
            wp = np.zeros_like(wt)
            np.add.at(wp.transpose(2, 0, 1), perm, wt.transpose(2, 0, 1))
            wt = wp
        from edgelstm.ir.frontend import Conv1D
        pad_mode = "zeros"
        prev = self.layers[-1] if self.layers else None
        if prev is not None and prev.kind == "pad" and pb == pe == 0 and x.linear and \
                self.consumers.get(name, 0) == 1 and prev.length == L - prev.left - prev.right and \
                prev.channels == C:
            # Pad then Conv: one Conv1D with the padding
            self.layers.pop()
            self.initial.pop()
            self.epoch += 1
            L, pb, pe, pad_mode = prev.length, prev.left, prev.right, prev.mode
        self._add(Conv1D(length=L, in_channels=C, out_channels=O, kernel_size=K, stride=stride, dilation=dil,
                         pad_left=pb, pad_right=pe, pad_mode=pad_mode, groups=group,
                         directions=[{"w": wt.astype(np.float32), "b": np.asarray(b, np.float32)}]))
        out_shape = self.t.vals[node.outputs[0]].shape
        out = _pos_layout(L_out, O)
        if len(out_shape) == 4:
            out = out.reshape([O] + [1] * (len(out_shape) - 3) + [L_out])
            out = np.moveaxis(out.reshape(tuple(d for k, d in enumerate(out_shape[1:]) if k + 1 != spatial[0]) +
                                          (L_out,)), -1, spatial[0] - 1)
        self._set(node.outputs[0], Frame(out.reshape(out_shape), self.epoch))

    def _conv_as_dense(self, node, x, w, b, ta, where):
        shape = x.idx.shape
        if any(d != 1 for k, d in enumerate(shape) if k not in (1, ta)):
            raise ImportModelError(f"{where}: a kernel-1 conv along time over data of shape {shape}")
        feats = x.idx.reshape(-1)
        wi = self._absorb_columns(w, Frame(feats, x.end), where)
        O = w.shape[0]
        self._add(Dense(input_size=self._n_chain(), output_size=O,
                        directions=[{"w": wi, "b": np.asarray(b, np.float32)}]))
        out_shape = self.t.vals[node.outputs[0]].shape
        self._set(node.outputs[0], Frame(np.arange(O).reshape(out_shape), self.epoch))

    # ------------------------------------------------------------------ recurrent nodes
    def _state_slot(self, v, where, what, layer_k, n_dir, H, layout):
        """initial_h / initial_c: None (zeros), a constant (the model's initial state) or a state input."""
        if v is None:
            return None, None
        if isinstance(v, StateIn):
            arr = v.idx if layout == 0 else np.swapaxes(v.idx, 0, 1)
            if arr.shape != (n_dir, 1, H):
                raise ImportModelError(f"{where}: {what} from state input {v.name!r} has shape {v.idx.shape}")
            return None, (v.name, arr[:, 0])
        if isinstance(v, np.ndarray):
            a = np.asarray(v, np.float32)
            if a.ndim != 3 or a.shape[2] != H or (a.shape[0] if layout == 0 else a.shape[1]) != n_dir:
                raise ImportModelError(f"{where}: {what} has shape {a.shape}, the node needs ({n_dir}, batch, {H}) "
                                       f"(an inconsistent graph; torch's dynamo exporter writes such graphs for LSTMs "
                                       f"with proj_size, which ONNX cannot express)")
            a = a if layout == 0 else a.transpose(1, 0, 2)
            if not np.all(a == a[:, :1]):
                raise ImportModelError(f"{where}: {what} differs between batch rows; a model has one initial state "
                                       f"(pass per-sequence states with initial_state=)")
            return a[:, 0], None
        raise ImportModelError(f"{where}: {what} is computed at run time from the data")

    def _recurrent(self, node, ins, where):
        op = node.op_type
        a = node.attrs
        x = ins[0]
        if not isinstance(x, Frame):
            raise ImportModelError(f"{where}: X is not the data")
        layout = a.get("layout", 0)
        shape = x.idx.shape
        if len(shape) != 3:
            raise ImportModelError(f"{where}: X of rank {len(shape)}")
        s_ax, b_ax = (0, 1) if layout == 0 else (1, 0)
        ta = self.t_axis(node.inputs[0])
        if self.tw is not None and ta != s_ax:
            raise ImportModelError(f"{where}: its sequence axis ({s_ax} with layout={layout}) is not the time axis "
                                   f"of the input (axis {ta})")
        if shape[s_ax] != 1 or shape[b_ax] != 1:
            raise ImportModelError(f"{where}: X has shape {shape} for one step of one sequence (the batch axis "
                                   f"holds data?)")
        direction = a.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ImportModelError(f"{where}: unknown direction {direction!r}")
        n_dir = 2 if direction == "bidirectional" else 1
        if a.get("clip") is not None:
            raise ImportModelError(f"{where}: the clip attribute is not supported: ONNX clips every gate's "
                                   f"pre-activation to [-clip, clip], while edgelstm's LSTM has TFLite's "
                                   f"cell_clip, which clips the cell state (a different model); re-export "
                                   f"without clip")
        if a.get("input_forget", 0):
            raise ImportModelError(f"{where}: input_forget=1 (coupled input and forget gates) is not supported")
        acts = [str(s) for s in a.get("activations", [])]
        default = _DEFAULT_ACTS[op] * n_dir
        nonlinearity = "tanh"
        if acts:
            low = [s.lower() for s in acts]
            if op == "RNN" and len(set(low)) == 1 and low[0] == "relu" and len(low) == n_dir:
                nonlinearity = "relu"
            elif low != default:
                raise ImportModelError(f"{where}: activations {acts} are not supported; only the defaults "
                                       f"{default}" + (" or Relu" if op == "RNN" else ""))
        for k in ("activation_alpha", "activation_beta"):
            if a.get(k):
                raise ImportModelError(f"{where}: attribute {k} is not supported (only default activations)")
        W, R = ins[1], ins[2]
        if not isinstance(W, np.ndarray) or not isinstance(R, np.ndarray):
            raise ImportModelError(f"{where}: W and R must be initializers (constant weights)")
        n_gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        if W.ndim != 3 or W.shape[0] != n_dir or W.shape[1] % n_gates or W.shape[1] == 0:
            raise ImportModelError(f"{where}: W has shape {W.shape}, expected ({n_dir}, {n_gates}*H, I)")
        H = W.shape[1] // n_gates
        if a.get("hidden_size", H) != H:
            raise ImportModelError(f"{where}: hidden_size={a.get('hidden_size')} but W implies {H}")
        I = W.shape[2]
        feats = x.idx.reshape(-1)
        if feats.size != I:
            raise ImportModelError(f"{where}: W expects {I} input features, the data has {feats.size}")
        if R.shape != (n_dir, n_gates * H, H):
            raise ImportModelError(f"{where}: R has shape {R.shape}, expected {(n_dir, n_gates * H, H)}")
        opt = list(ins[3:]) + [None] * (8 - len(ins))
        B, lens, h0 = opt[0], opt[1], opt[2]
        c0 = opt[3] if op == "LSTM" else None
        P = opt[4] if op == "LSTM" else None
        if B is None:
            B = np.zeros((n_dir, 2 * n_gates * H), np.float32)
        if not isinstance(B, np.ndarray) or B.shape != (n_dir, 2 * n_gates * H):
            raise ImportModelError(f"{where}: B must be a constant of shape {(n_dir, 2 * n_gates * H)}")
        if isinstance(lens, np.ndarray):
            raise ImportModelError(f"{where}: a constant sequence_lens is not supported; make it a graph input "
                                   f"and pass lengths= to run()")
        if lens is not None and not isinstance(lens, tuple):
            raise ImportModelError(f"{where}: sequence_lens must be a graph input (lengths=)")
        if isinstance(lens, tuple):
            if self.tw is None:
                raise ImportModelError(f"{where}: sequence_lens in a one-step graph")
            self.uses_lengths = True
        if P is not None and (not isinstance(P, np.ndarray) or P.shape != (n_dir, 3 * H)):
            raise ImportModelError(f"{where}: P must be a constant of shape {(n_dir, 3 * H)}")
        k = len(self.layers)
        init, feeds = {}, {}
        for nm, v in (("h", h0), ("c", c0)):
            const, fed = self._state_slot(v, where, f"initial_{nm}", k, n_dir, H, layout)
            if const is not None:
                init[nm] = const
            if fed is not None:
                feeds[nm] = fed
        if self.tw is None and len(feeds) != (2 if op == "LSTM" else 1):
            raise ImportModelError(f"{where}: in a graph where one call is one step, the recurrent state must come "
                                   f"from state inputs (initial_h{'/initial_c' if op == 'LSTM' else ''}) and "
                                   f"go back out; here it restarts every call")
        if (direction != "forward") and self.tw is None:
            raise ImportModelError(f"{where}: a {direction} layer in a one-step graph")
        # the IR's input weights read the chain's output: absorb the frame's index map into the columns
        fr = Frame(feats, x.end)
        self._chain_end(x, where)
        dirs = []
        for d in range(n_dir):
            w = self._absorb_columns(W[d].astype(np.float64), fr, where)
            r, bb = R[d].astype(np.float32), B[d].astype(np.float32)
            p = direction_weights(op.lower(), w, r, bb[:n_gates * H], bb[n_gates * H:],
                                  {"lstm": ONNX_LSTM, "gru": ONNX_GRU})
            if P is not None:
                p["w_peep"] = reorder_gates(P[d].reshape(3, H), ONNX_PEEPHOLE, "peephole")
            dirs.append(p)
        common = dict(input_size=self._n_chain(), hidden_size=H, bidirectional=n_dir == 2,
                      reverse=direction == "reverse", directions=dirs)
        if op == "LSTM":
            layer = LSTM(peephole=P is not None, **common)
        elif op == "GRU":
            layer = GRU(reset_after=bool(a.get("linear_before_reset", 0)), **common)
        else:
            layer = RNN(nonlinearity=nonlinearity, **common)
        self._add(layer, [{n: init[n][d] for n in init} for d in range(n_dir)] if init else None)
        ids = {}
        for nm in ("h", "c") if op == "LSTM" else ("h",):
            for d in range(n_dir):
                self.state_ids[(k, d, nm)] = self.n_ids
                ids[(d, nm)] = self.n_ids + np.arange(H)
                self.n_ids += H
        for nm, (src, arr) in feeds.items():
            for d in range(n_dir):
                for i, e in enumerate(arr[d]):
                    if int(e) in self.feeds[src]:
                        raise ImportModelError(f"{where}: element {int(e)} of state input {src!r} feeds two states")
                    self.feeds[src][int(e)] = int(ids[(d, nm)][i])
        outs = node.outputs + [""] * (3 - len(node.outputs))
        y_shape = (1, n_dir, 1, H) if layout == 0 else (1, 1, n_dir, H)
        rng = (-1.0, 1.0) if op != "RNN" or nonlinearity == "tanh" else (0.0, np.inf)
        y = np.arange(n_dir * H).reshape(n_dir, H)
        y = y.reshape(y_shape)
        if outs[0]:
            self.env[outs[0]] = Frame(y, self.epoch, rng=rng)
        st_shape = (n_dir, 1, H) if layout == 0 else (1, n_dir, H)
        for o, nm in ((outs[1], "h"), (outs[2], "c")):
            if not o or (nm == "c" and op != "LSTM"):
                continue
            arr = np.stack([ids[(d, nm)] for d in range(n_dir)]).reshape(st_shape)
            frame = None
            if nm == "h" and self.tw is None:      # one step: the final h is this step's output
                frame = Frame(np.arange(n_dir * H).reshape(st_shape), self.epoch, rng=rng)
            self.env[o] = StateOut(arr, frame)
