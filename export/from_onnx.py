"""ONNX graphs around LSTM / GRU / RNN nodes to the edgelstm IR.  onnx is imported inside ``from_onnx`` only.

The graph is read as ONE chain from its data input to its first output.  Every value is either a constant
(initializers, Constant nodes and anything computed from constants only, folded with onnx's reference
evaluator), a *shape-derived* value (computed from the Shape of the data, e.g. the zero initial state a
PyTorch export builds for a dynamic batch) or the data itself.  The data is tracked as a tensor whose axes
carry labels (B batch, T time, F features, D directions, H hidden, 1 a unit axis), so Transpose / Squeeze /
Unsqueeze / Reshape only permute or merge labels: whatever the file's layout, the imported model takes
batch-first (B, T, F) frames and emits (B, T, D*H) (or its head's width).
"""
from __future__ import annotations

import numpy as np

from edgelstm.errors import EdgeLSTMError, ImportModelError
from edgelstm.ir.model import GRU, LSTM, RNN, Dense, ModelSpec
from edgelstm.runtime import Model, State

from ._files import read_model_file
from .gate_order import ONNX_GRU, ONNX_LSTM, ONNX_PEEPHOLE, direction_weights, reorder_gates

# default activations per direction; anything else is refused by name
_DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}
_FOLDABLE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Reshape", "ConstantOfShape",
             "Expand", "Identity", "Add", "Sub", "Mul", "Div", "Transpose", "Range", "Equal", "Where", "Size"}
_ACT_OPS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softmax": "softmax"}


class _ShapeDerived:
    """A value computed from the data's shape (known only at run time).  ``zero``: provably all zeros."""

    def __init__(self, zero: bool = False, vec=None, scalar: bool = False):
        self.zero = zero
        self.vec = vec          # a 1-D shape vector, entries int, "B", "T" or None (unknown); None if not one
        self.scalar = scalar
        self.tshape = None      # this tensor's own shape where known (zero state tensors built by exporters)
        self.value = None       # Expand(constant, run-time shape): the constant broadcast over the batch


class _FinalState:
    """Y_h / Y_c of IR layer ``layer``: the final state, returned by run(..., return_state=True)."""

    def __init__(self, layer: int):
        self.layer = layer


class _Data:
    """The data tensor: axis labels plus the sizes of the labelled feature axes."""

    def __init__(self, axes: tuple, sizes: dict):
        self.axes = tuple(axes)
        self.sizes = dict(sizes)

    def size(self, label):
        return self.sizes.get(label, 1 if label == "1" else None)


def _load(src):
    import onnx
    if isinstance(src, onnx.ModelProto):
        return src, "<ModelProto>"
    data, where = read_model_file(src)
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ImportModelError(f"{where}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.graph.node:
        raise ImportModelError(f"{where}: the ONNX file has no graph nodes")
    return model, where


def _attrs(node) -> dict:
    import onnx
    out = {}
    for a in node.attribute:
        try:
            out[a.name] = onnx.helper.get_attribute_value(a)
        except Exception as e:
            raise ImportModelError(f"node {node.name or node.op_type}: bad attribute {a.name!r} ({e})") from None
    return out


def _fold(node, inputs, opset):
    """Evaluate one node on constant inputs with onnx's reference evaluator."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    names = [f"in{i}" for i in range(len(inputs))]
    n = onnx.helper.make_node(node.op_type, [nm if v is not None else "" for nm, v in zip(names, inputs)],
                              [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    n.attribute.extend(node.attribute)
    try:
        ref = ReferenceEvaluator(n)
        feeds = {nm: v for nm, v in zip(names, inputs) if v is not None}
        return ref.run(None, feeds)
    except Exception as e:
        raise ImportModelError(f"node {node.name or node.op_type}: cannot fold {node.op_type} on constants "
                               f"({type(e).__name__}: {e})") from None


class _Reader:
    def __init__(self, model):
        from onnx import numpy_helper
        self.model = model
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.vals: dict = {}
        for init in g.initializer:
            try:
                self.vals[init.name] = numpy_helper.to_array(init)
            except Exception as e:
                raise ImportModelError(f"initializer {init.name!r}: unreadable ({e})") from None
        dyn = [i for i in g.input if i.name not in self.vals]
        self.layers: list = []
        self.initial: list = []      # per IR layer: list of per-direction float state dicts, or None (zeros)
        self.data_input = None
        self.lengths_input = None
        self.state_inputs: list = []
        self.pending_dense = None    # the Dense an Add / activation may still merge into
        # which data inputs feed only a sequence_lens / initial_h / initial_c slot
        roles = {}
        for node in g.node:
            if node.op_type in ("LSTM", "GRU", "RNN"):
                for slot, name in enumerate(node.input):
                    if slot >= 4 and name:
                        roles.setdefault(name, set()).add("lengths" if slot == 4 else "state")
            for name in node.input:
                roles.setdefault(name, set())
        data = []
        for i in dyn:
            r = roles.get(i.name, set())
            uses = sum(1 for node in g.node for nm in node.input if nm == i.name)
            slot_uses = sum(1 for node in g.node if node.op_type in ("LSTM", "GRU", "RNN")
                            for s, nm in enumerate(node.input) if s >= 4 and nm == i.name)
            if r and uses == slot_uses:
                if "lengths" in r:
                    self.lengths_input = i.name
                    self.vals[i.name] = ("lengths",)
                else:
                    self.state_inputs.append(i.name)
                    self.vals[i.name] = _ShapeDerived(zero=True)  # a state input: zeros unless given at run
            else:
                data.append(i)
        if len(data) != 1:
            raise ImportModelError(f"expected exactly one data input, found {[i.name for i in data]} (weights must "
                                   f"be initializers; sequence_lens / initial_h / initial_c may be inputs)")
        x = data[0]
        dims = x.type.tensor_type.shape.dim
        if len(dims) != 3:
            raise ImportModelError(f"data input {x.name!r} must have rank 3 (sequence, batch, features in some "
                                   f"order), got rank {len(dims)}")
        self.data_input = x.name
        self.x_dims = [d.dim_value if d.HasField("dim_value") else None for d in dims]

    # ------------------------------------------------------------------ the walk
    def run(self):
        g = self.model.graph
        first = next((n for n in g.node if n.op_type in ("LSTM", "GRU", "RNN", "Gemm", "MatMul", "Transpose")
                      and self.data_input in n.input), None)
        # The data's layout is decided by the first op that reads it (T,B,F unless batch-first there).
        self.vals[self.data_input] = self._input_layout(first)
        for node in g.node:
            self._node(node)
        data_outs = [o.name for o in g.output if isinstance(self.vals.get(o.name), _Data)]
        final_outs = [o.name for o in g.output if isinstance(self.vals.get(o.name), _FinalState)]
        if not self.layers:
            raise ImportModelError("the graph has no LSTM, GRU, RNN or Gemm/MatMul layer")
        if not data_outs:
            last = len(self.layers) - 1
            if final_outs and all(self.vals[o].layer == last for o in final_outs):
                return final_outs[0]  # only Y_h / Y_c: run(..., return_state=True) returns them
            raise ImportModelError(f"no graph output carries the data through the model "
                                   f"(outputs: {[o.name for o in g.output]})")
        out = data_outs[0]
        v = self.vals[out]
        axes = [a for a in v.axes if a != "1"]
        if sorted(axes) == ["B", "D", "H", "T"] and len(self.layers) and self.layers[-1].kind != "dense":
            axes = ["B", "T", "F"]  # a recurrent node's raw Y: the IR emits it batch-first, directions concatenated
        if axes not in (["B", "T", "F"], ["T", "B", "F"]):
            raise ImportModelError(f"graph output {out!r} has axes {v.axes}; expected per-step features (batch "
                                   f"and sequence axes kept, directions and hidden units merged in that order)")
        return out

    def _input_layout(self, first):
        if first is not None and first.op_type in ("LSTM", "GRU", "RNN") and _attrs(first).get("layout", 0) == 1:
            axes = ("B", "T", "F")
        elif first is not None and first.op_type == "Transpose":
            perm = list(_attrs(first).get("perm", [2, 1, 0]))
            # a batch-first export transposes (B, T, F) to (T, B, F) before its first recurrent node
            axes = ("B", "T", "F") if perm == [1, 0, 2] else ("T", "B", "F")
        else:
            axes = ("T", "B", "F")
        f = self.x_dims[2]
        return _Data(axes, {"F": f} if f else {})

    def _node(self, node):
        op = node.op_type
        where = f"node {node.name or '?'} ({op})"
        if node.domain not in ("", "ai.onnx"):
            raise ImportModelError(f"{where}: custom domain {node.domain!r} is not supported")
        ins = [self.vals.get(n) if n else None for n in node.input]
        if any(isinstance(v, _FinalState) for v in ins):
            raise ImportModelError(f"{where}: reads a final state (Y_h / Y_c); only per-step outputs (Y) can "
                                   f"feed further layers")
        for n, v in zip(node.input, ins):
            if n and v is None and n not in self.vals:
                raise ImportModelError(f"{where}: input {n!r} is not produced by any earlier node")
        if op == "Constant":
            outs = _fold(node, [], self.opset)
            self.vals[node.output[0]] = outs[0]
            return
        if any(isinstance(v, tuple) for v in ins) and op not in ("LSTM", "GRU", "RNN"):
            raise ImportModelError(f"{where}: sequence_lens may only feed the recurrent node")
        data = [v for v in ins if isinstance(v, _Data)]
        if not data:
            if any(isinstance(v, _ShapeDerived) for v in ins):
                if op not in _FOLDABLE:
                    raise ImportModelError(f"{where}: unsupported op on shape-derived values")
                vec = self._shape_vec(node, ins)
                for o in node.output:
                    self.vals[o] = _ShapeDerived(zero=self._zero_result(node, ins),
                                                 vec=None if vec is None else vec[0], scalar=bool(vec and vec[1]))
                out = self.vals[node.output[0]]
                if op in ("Expand", "ConstantOfShape") and isinstance(ins[-1], _ShapeDerived):
                    out.tshape = ins[-1].vec
                    if op == "Expand" and isinstance(ins[0], np.ndarray):
                        out.value = ins[0]   # e.g. to_onnx's initial state, repeated for every sequence
                elif op == "Slice" and isinstance(ins[0], _ShapeDerived) and ins[0].tshape is not None:
                    t = ins[0].tshape
                    axes = [0] if len(ins) < 4 or ins[3] is None else [int(a) for a in np.ravel(ins[3])]
                    if axes == [0] and isinstance(ins[1], np.ndarray) and isinstance(ins[2], np.ndarray):
                        lo, hi = int(ins[1].ravel()[0]), int(ins[2].ravel()[0])
                        if isinstance(t[0], int):
                            out.tshape = [len(range(t[0])[lo:hi])] + list(t[1:])
                elif op in ("Identity", "Cast") and isinstance(ins[0], _ShapeDerived):
                    out.tshape = ins[0].tshape
                return
            outs = _fold(node, ins, self.opset)
            for o, v in zip(node.output, outs):
                self.vals[o] = np.asarray(v)
            return
        if len(data) > 1:
            raise ImportModelError(f"{where}: combines the data with itself (branches are not supported)")
        x = data[0]
        handler = getattr(self, f"_op_{op}", None)
        if handler is None and op in ("Slice", "Gather", "Split") and all(l.kind == "dense" for l in self.layers):
            raise ImportModelError(f"{where}: the data is sliced per time step: an unrolled recurrence (e.g. "
                                   f"torch's dynamo exporter on nn.RNN) is not supported; export with the "
                                   f"TorchScript-based exporter (dynamo=False) to get an ONNX RNN node")
        if handler is None:
            raise ImportModelError(
                f"{where}: unsupported op on the data path; supported: LSTM, GRU, RNN, Gemm, MatMul, Add, "
                f"Sigmoid, Tanh, Relu, Softmax, Transpose, Squeeze, Unsqueeze, Reshape, Identity, Dropout, Shape")
        handler(node, x, ins, where)

    @staticmethod
    def _shape_vec(node, ins):
        """Symbolic evaluation of the shape arithmetic exporters emit: (entries, is_scalar) or None."""
        def vec(v):
            if isinstance(v, _ShapeDerived):
                return (v.vec, v.scalar) if v.vec is not None else None
            if isinstance(v, np.ndarray) and v.ndim <= 1 and v.dtype.kind in "iu":
                return [int(a) for a in v.ravel()], v.ndim == 0
            return None
        op, a = node.op_type, _attrs(node)
        vs = [vec(v) if v is not None else None for v in ins]
        if op in ("Identity", "Cast") and vs[0]:
            return vs[0]
        if op == "Reshape" and vs[0]:
            return vs[0][0], False
        if op == "Unsqueeze" and vs[0] and vs[0][1]:
            return vs[0][0], False
        if op == "Squeeze" and vs[0] and len(vs[0][0]) == 1:
            return vs[0][0], True
        if op == "Concat" and all(vs):
            return [e for v in vs for e in v[0]], False
        if op == "Gather" and vs[0] and isinstance(ins[1], np.ndarray) and a.get("axis", 0) == 0:
            idx = ins[1]
            try:
                out = [vs[0][0][int(i)] for i in idx.ravel()]
            except IndexError:
                return None
            return out, idx.ndim == 0
        if op == "Slice" and vs[0] and all(isinstance(v, np.ndarray) for v in ins[1:3]):
            if len(ins) > 4 and ins[4] is not None and not np.all(np.asarray(ins[4]) == 1):
                return None
            n = len(vs[0][0])
            lo, hi = int(ins[1].ravel()[0]), int(ins[2].ravel()[0])
            return vs[0][0][slice(max(min(lo, n), -n), max(min(hi, n), -n - 1))], False
        if op in ("Mul", "Add") and len(vs) == 2 and all(vs) and len(vs[0][0]) == len(vs[1][0]):
            out = []
            for x, y in zip(vs[0][0], vs[1][0]):
                if isinstance(x, int) and isinstance(y, int):
                    out.append(x * y if op == "Mul" else x + y)
                elif op == "Mul" and (x == 1 or y == 1):
                    out.append(y if x == 1 else x)
                else:
                    out.append(None)
            return out, vs[0][1] and vs[1][1]
        return None

    @staticmethod
    def _zero_result(node, ins) -> bool:
        """Is the (run-time shaped) result provably all zeros?  Tracks the zero initial states exporters build."""
        def zero(v):
            return (isinstance(v, _ShapeDerived) and v.zero) or (isinstance(v, np.ndarray) and not np.any(v))
        op = node.op_type
        if op == "ConstantOfShape":
            value = _attrs(node).get("value")
            return value is None or not np.any(_tensor(value))
        if op == "Expand":
            return zero(ins[0])
        if op in ("Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Slice", "Gather"):
            return zero(ins[0])
        if op == "Concat":
            return all(zero(v) for v in ins)
        return False

    def _set(self, node, value):
        if isinstance(value, _Data) and "D" not in value.axes and "H" in value.axes:
            sizes = dict(value.sizes)
            sizes["F"] = sizes.pop("H")
            value = _Data(["F" if a == "H" else a for a in value.axes], sizes)
        self.vals[node.output[0]] = value

    # ------------------------------------------------------------------ data-path ops
    def _op_Identity(self, node, x, ins, where):
        self._set(node, x)

    _op_Dropout = _op_Identity

    def _op_Shape(self, node, x, ins, where):
        a = _attrs(node)
        full = [a_ if a_ in ("B", "T") else x.size(a_) for a_ in x.axes]
        n = len(full)
        start, end = a.get("start", 0), a.get("end", n)
        self.vals[node.output[0]] = _ShapeDerived(vec=full[slice(max(min(start, n), -n), max(min(end, n), -n))])

    def _op_Transpose(self, node, x, ins, where):
        perm = list(_attrs(node).get("perm", range(len(x.axes))[::-1]))
        if sorted(perm) != list(range(len(x.axes))):
            raise ImportModelError(f"{where}: perm {perm} does not match rank {len(x.axes)}")
        self._set(node, _Data([x.axes[p] for p in perm], x.sizes))

    def _axes_arg(self, node, ins, where, rank):
        a = _attrs(node).get("axes")
        if a is None and len(ins) > 1 and ins[1] is not None:
            if not isinstance(ins[1], np.ndarray):
                raise ImportModelError(f"{where}: axes must be constant")
            a = ins[1].ravel().tolist()
        return None if a is None else [int(v) % rank for v in a]

    def _op_Squeeze(self, node, x, ins, where):
        axes = self._axes_arg(node, ins, where, len(x.axes))
        if axes is None:
            axes = [i for i, a in enumerate(x.axes) if x.size(a) == 1]
        for i in axes:
            if x.size(x.axes[i]) != 1:
                raise ImportModelError(f"{where}: squeezes axis {i} ({x.axes[i]}) which is not of size 1")
        self._set(node, _Data([a for i, a in enumerate(x.axes) if i not in axes], x.sizes))

    def _op_Unsqueeze(self, node, x, ins, where):
        axes = self._axes_arg(node, ins, where, len(x.axes) + 1)
        if axes is None:
            raise ImportModelError(f"{where}: Unsqueeze needs axes")
        out = list(x.axes)
        for i in sorted(axes):
            out.insert(i, "1")
        self._set(node, _Data(out, x.sizes))

    def _op_Reshape(self, node, x, ins, where):
        if isinstance(ins[1], np.ndarray):
            shape = [int(v) for v in ins[1].ravel()]
        elif isinstance(ins[1], _ShapeDerived) and ins[1].vec is not None and None not in ins[1].vec:
            shape = list(ins[1].vec)
        else:
            raise ImportModelError(f"{where}: the target shape must be constant or a known function of the "
                                   f"input's shape")
        # keep B and T; every other group of axes must merge (in order) into one feature axis
        dyn = [a for a in x.axes if a not in ("B", "T")]
        feat = int(np.prod([x.size(a) or 0 for a in dyn])) if dyn else 1
        if any(x.size(a) is None for a in dyn):
            raise ImportModelError(f"{where}: reshape of axes with unknown sizes {x.axes}")
        out, src = [], [a for a in x.axes if a in ("B", "T")]
        order = [a for a in x.axes if a in ("B", "T")]
        for k, s in enumerate(shape):
            if s == 0 and k < len(x.axes) and x.axes[k] in ("B", "T"):
                out.append(x.axes[k])
            elif s in ("B", "T"):
                out.append(s)
            elif s == -1 or s == feat:
                out.append("F")
            elif s == 1:
                out.append("1")
            else:
                raise ImportModelError(f"{where}: reshape {x.axes} to {shape} is not a merge of the feature axes")
        if [a for a in out if a in ("B", "T")] != order or out.count("F") != 1:
            raise ImportModelError(f"{where}: reshape {x.axes} to {shape} moves the batch or sequence axes")
        # the merged feature axis must be in D-major order (D then H), the only order the IR emits
        if [a for a in x.axes if a in ("D", "H")] == ["H", "D"] and x.size("D") != 1:
            raise ImportModelError(f"{where}: reshape merges H before D (not the [forward, backward] layout)")
        del src
        self._set(node, _Data(out, {"F": feat}))

    def _features_last(self, x, where):
        if x.axes[-1] != "F" or not set(x.axes[:-1]) <= {"B", "T", "1"}:
            raise ImportModelError(f"{where}: expects per-step features on the last axis, got axes {x.axes}")

    def _add_dense(self, w, b, where, x):
        """w (O, I), b (O,)."""
        self._features_last(x, where)
        if x.size("F") not in (None, w.shape[1]):
            raise ImportModelError(f"{where}: weight expects {w.shape[1]} features, data has {x.size('F')}")
        d = Dense(input_size=w.shape[1], output_size=w.shape[0],
                  directions=[{"w": w.astype(np.float32), "b": b.astype(np.float32)}])
        self.layers.append(d)
        self.initial.append(None)
        self.pending_dense = d
        return _Data(x.axes, {"F": w.shape[0]})

    def _op_MatMul(self, node, x, ins, where):
        if not isinstance(ins[1], np.ndarray) or ins[1].ndim != 2 or not isinstance(ins[0], _Data):
            raise ImportModelError(f"{where}: only data @ constant (I, O) matrix is supported")
        w = ins[1].T
        self._set(node, self._add_dense(w, np.zeros(w.shape[0], np.float32), where, x))
        self._matmul_out = node.output[0]

    def _op_Gemm(self, node, x, ins, where):
        a = _attrs(node)
        if a.get("transA", 0) or not isinstance(ins[1], np.ndarray) or not isinstance(ins[0], _Data):
            raise ImportModelError(f"{where}: only Gemm(data, constant W[, constant C]) without transA")
        if len(x.axes) != 2 and not (len(x.axes) == 3 and "1" in x.axes):
            pass  # Gemm is rank 2 in ONNX; a rank-3 graph would not pass the checker anyway
        w = ins[1] if a.get("transB", 0) else ins[1].T
        w = w * np.float32(a.get("alpha", 1.0))
        c = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros(w.shape[0], np.float32)
        if not isinstance(c, np.ndarray):
            raise ImportModelError(f"{where}: Gemm bias must be constant")
        c = np.broadcast_to(np.asarray(c, np.float32).reshape(-1) * np.float32(a.get("beta", 1.0)), (w.shape[0],))
        self._set(node, self._add_dense(w, c, where, x))

    def _op_Add(self, node, x, ins, where):
        const = ins[1] if isinstance(ins[0], _Data) else ins[0]
        d = self.pending_dense
        if d is None or not isinstance(const, np.ndarray) or d.activation != "none" or \
                const.size not in (1, d.output_size) or self.layers[-1] is not d:
            raise ImportModelError(f"{where}: Add is only supported as the bias right after a MatMul/Gemm")
        d.directions[0]["b"] = (d.directions[0]["b"] + np.broadcast_to(const.reshape(-1), (d.output_size,))
                                ).astype(np.float32)
        self._set(node, x)

    def _activation(self, node, x, ins, where):
        d = self.pending_dense
        act = _ACT_OPS[node.op_type]
        if d is None or self.layers[-1] is not d or d.activation != "none":
            raise ImportModelError(f"{where}: an activation is only supported right after a MatMul/Gemm (+Add)")
        if act == "softmax":
            axis = _attrs(node).get("axis", -1)
            if axis % len(x.axes) != len(x.axes) - 1:
                raise ImportModelError(f"{where}: Softmax must run over the feature axis (the last)")
        d.activation = act
        self.pending_dense = None
        self._set(node, x)

    _op_Sigmoid = _op_Tanh = _op_Relu = _op_Softmax = _activation

    def _op_LSTM(self, node, x, ins, where):
        self._recurrent(node, x, ins, where)

    _op_GRU = _op_RNN = _op_LSTM

    def _recurrent(self, node, x, ins, where):
        op = node.op_type
        a = _attrs(node)
        layout = a.get("layout", 0)
        want = ("T", "B", "F") if layout == 0 else ("B", "T", "F")
        if tuple(x.axes) != want:
            raise ImportModelError(f"{where}: layout={layout} expects data axes {want}, the data here is {x.axes}")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
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
        acts = [s.decode() if isinstance(s, bytes) else str(s) for s in a.get("activations", [])]
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
        if W.ndim != 3 or W.shape[0] != n_dir or W.shape[1] % n_gates:
            raise ImportModelError(f"{where}: W has shape {W.shape}, expected ({n_dir}, {n_gates}*H, I)")
        H = W.shape[1] // n_gates
        if a.get("hidden_size", H) != H:
            raise ImportModelError(f"{where}: hidden_size={a.get('hidden_size')} but W implies {H}")
        I = W.shape[2]
        if x.size("F") not in (None, I):
            raise ImportModelError(f"{where}: W expects {I} input features, the data has {x.size('F')}")
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
        if lens is not None and not (isinstance(lens, tuple) or isinstance(lens, np.ndarray)):
            raise ImportModelError(f"{where}: sequence_lens must be a graph input (lengths=) or constant")
        if isinstance(lens, np.ndarray):
            raise ImportModelError(f"{where}: a constant sequence_lens is not supported; make it a graph input "
                                   f"and pass lengths= to run()")
        if P is not None and (not isinstance(P, np.ndarray) or P.shape != (n_dir, 3 * H)):
            raise ImportModelError(f"{where}: P must be a constant of shape {(n_dir, 3 * H)}")
        init = {}
        for name, v in (("h", h0), ("c", c0)):
            if isinstance(v, _ShapeDerived) and v.tshape is not None and len(v.tshape) == 3:
                want = [n_dir, "B", H] if layout == 0 else ["B", n_dir, H]
                if any(isinstance(g, int) and g != w for g, w in zip(v.tshape, want)):
                    raise ImportModelError(f"{where}: initial_{name} is built with shape {v.tshape} but the node "
                                           f"needs {want} (an inconsistent graph; torch's dynamo exporter writes "
                                           f"such graphs for LSTMs with proj_size, which ONNX cannot express)")
            if isinstance(v, _ShapeDerived) and v.value is not None and not v.zero:
                try:  # one state broadcast over a run-time batch: the model's initial state
                    v = np.broadcast_to(v.value, (n_dir, 1, H) if layout == 0 else (1, n_dir, H))
                except ValueError:
                    raise ImportModelError(f"{where}: initial_{name} expands a constant of shape "
                                           f"{v.value.shape}, which does not broadcast to one state") from None
            if v is None or isinstance(v, _ShapeDerived):
                if isinstance(v, _ShapeDerived) and not v.zero:
                    raise ImportModelError(f"{where}: initial_{name} is computed at run time and not provably "
                                           f"zero; make it an initializer")
                continue
            v = np.asarray(v, np.float32)
            if v.ndim != 3 or v.shape[2] != H or (v.shape[0] if layout == 0 else v.shape[1]) != n_dir:
                raise ImportModelError(f"{where}: initial_{name} has shape {v.shape}")
            v = v if layout == 0 else v.transpose(1, 0, 2)           # (D, B, H)
            if not np.all(v == v[:, :1]):
                raise ImportModelError(f"{where}: initial_{name} differs between batch rows; a model has one "
                                       f"initial state (pass per-sequence states with initial_state=)")
            init[name] = v[:, 0]
        dirs = []
        for d in range(n_dir):
            w, r, b = W[d].astype(np.float32), R[d].astype(np.float32), B[d].astype(np.float32)
            wb, rb = b[:n_gates * H], b[n_gates * H:]
            p = direction_weights(op.lower(), w, r, wb, rb, {"lstm": ONNX_LSTM, "gru": ONNX_GRU})
            if P is not None:
                p["w_peep"] = reorder_gates(P[d].reshape(3, H), ONNX_PEEPHOLE, "peephole")
            dirs.append(p)
        common = dict(input_size=I, hidden_size=H, bidirectional=n_dir == 2, reverse=direction == "reverse",
                      directions=dirs)
        if op == "LSTM":
            layer = LSTM(peephole=P is not None, **common)
        elif op == "GRU":
            layer = GRU(reset_after=bool(a.get("linear_before_reset", 0)), **common)
        else:
            layer = RNN(nonlinearity=nonlinearity, **common)
        self.layers.append(layer)
        self.initial.append([{n: init[n][d] for n in init} for d in range(n_dir)] if init else None)
        self.pending_dense = None
        axes = ("T", "D", "B", "H") if layout == 0 else ("B", "T", "D", "H")
        self._set(node, _Data(axes, {"D": n_dir, "H": H}))
        # Y_h / Y_c (final states) are not part of the per-step output: run(..., return_state=True) gives them
        for o in node.output[1:]:
            if o:
                self.vals[o] = _FinalState(len(self.layers) - 1)


def _tensor(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)


def from_onnx(src) -> Model:
    """Import an ONNX model (a path, file bytes or an ``onnx.ModelProto``) built around LSTM / GRU / RNN nodes
    into a runnable float32 ``edgelstm.Model``.

    The model takes batch-first ``(B, T, F)`` frames whatever the file's layout and returns ``(B, T, D*H)`` (or
    its head's width); a ``sequence_lens`` graph input becomes ``run(..., lengths=)``; ``initial_h`` /
    ``initial_c`` initializers become the model's initial state (``Model.initial_state``).  Y_h / Y_c are the
    final state: ``run(..., return_state=True)``.  Unsupported attributes and ops raise ``ImportModelError``
    naming them; so does anything unreadable.
    """
    try:
        import onnx
        import onnx.checker
    except ImportError:
        raise ImportModelError("from_onnx needs the 'onnx' package: pip install 'edgelstm[onnx]'") from None
    model, where = _load(src)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - the checker raises ValidationError and, on odd protos, others
        raise ImportModelError(f"{where}: onnx.checker rejects the model: {str(e).splitlines()[0][:300]}") from None
    try:
        reader = _Reader(model)
        reader.run()
        initial = None
        if any(s is not None for s in reader.initial):
            initial = State([[{n: np.zeros(shape, np.float32) for n, shape in layer.state_shapes().items()}
                              for _ in range(2 if layer.bidirectional else 1)] for layer in reader.layers])
            for k, dirs in enumerate(reader.initial):
                for d, entry in enumerate(dirs or []):
                    initial[k][d].update({n: np.asarray(v, np.float32) for n, v in entry.items()})
        return Model(ModelSpec(layers=reader.layers), initial_state=initial)
    except EdgeLSTMError as e:
        if isinstance(e, ImportModelError):
            raise ImportModelError(f"{where}: {e}") from None
        raise ImportModelError(f"{where}: {type(e).__name__}: {e}") from None
    except MemoryError:
        raise ImportModelError(f"{where}: the model is too large to read") from None
    except Exception as e:  # noqa: BLE001 - a malformed graph must end as an edgelstm error, whatever trips on it
        raise ImportModelError(f"{where}: malformed ONNX model ({type(e).__name__}: {str(e)[:300]})") from None

