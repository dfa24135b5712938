"""The first half of the ONNX importer: load and check -> bind fixed inputs -> fold constants.

``load(src)`` reads the file and its external data (resolved against the model's own folder only; any path that
leaves it is refused), checks it, and returns the ModelProto.  ``Trace`` walks the graph once, in topological
order, with every value either a constant (``Const``) or a run-time tensor (``Dyn``) whose shape is known:

- nodes that the graph outputs never need are skipped (an unused ``ConstantOfShape[1e9]`` costs nothing);
- constant nodes are folded (onnx_fold.fold: opset-aware, sizes bounded before anything is materialized);
- ``If`` with a constant condition is replaced by its chosen branch, walked in place; ``Loop`` on constants is
  run with its trip count bounded; control flow on run-time values is refused by name;
- ``Shape`` / ``Size`` of a run-time tensor are constants, because every shape is known.

Unknown sizes: the dynamic axes of the data input are *symbols*.  The walk runs in several "worlds" at once:
world 0 sets every symbol to 1, world k sets symbol k to 2.  A value whose shape differs between worlds depends
on that symbol; the recurrent node later tells which symbol is the time axis (T) and which are batch (B, taken as
1: a model is imported per sequence).  A branch condition that differs between worlds is refused (the graph
branches on a dynamic size).  The nodes left (those reading run-time values) are the residual graph that
onnx_lower.py maps onto layer kinds.
"""
from __future__ import annotations

import os
from collections import ChainMap

import numpy as np

from edgelstm.errors import ImportModelError

from ._files import read_model_file
from .onnx_fold import FoldContext, broadcast_shape, conv_out_len, final_error, fold, pad_params, reshape_shape, \
    slice_index, split_sizes, squeeze_shape, unsqueeze_shape

MAX_LOOP_TRIPS = 1_000       # constant loops in exports are short (index arithmetic); each trip is a walk
MAX_NODES = 200_000          # nodes walked in all (inlined branches and loop bodies included)
MAX_DEPTH = 32               # nesting of subgraphs


# ------------------------------------------------------------------------------------------- loading
def _external_tensors(model):
    """Every TensorProto of the model (initializers and tensor attributes, subgraphs included)."""
    import onnx

    def graph(g):
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    yield a.t
                elif a.type == onnx.AttributeProto.TENSORS:
                    yield from a.tensors
                elif a.type == onnx.AttributeProto.GRAPH:
                    yield from graph(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        yield from graph(sub)
    yield from graph(model.graph)


def _read_external(t, base: str | None, where: str) -> None:
    """Load one tensor's external data into ``raw_data``: only a plain relative path inside the model's folder,
    offset and length inside the file, length equal to the tensor's size; everything else is refused."""
    import onnx
    info = {e.key: e.value for e in t.external_data}
    name = t.name or "?"
    if base is None:
        raise ImportModelError(f"{where}: tensor {name!r} keeps its data in an external file, which can only be "
                               f"read when the model is given as a path")
    loc = info.get("location", "")
    if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or "\x00" in loc or ":" in loc:
        raise ImportModelError(f"{where}: tensor {name!r}: external data location {loc!r} is not a relative path "
                               f"inside the model's folder")
    root = os.path.realpath(base)
    path = os.path.realpath(os.path.join(root, loc))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ImportModelError(f"{where}: tensor {name!r}: external data location {loc!r} leaves the model's "
                               f"folder")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ImportModelError(f"{where}: tensor {name!r}: bad external data offset/length") from None
    try:
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    except Exception:
        raise ImportModelError(f"{where}: tensor {name!r}: unknown data type {t.data_type}") from None
    n = 1
    for d in t.dims:
        if d < 0:
            raise ImportModelError(f"{where}: tensor {name!r}: negative dimension")
        n *= int(d)
    want = n * dt.itemsize
    if length is None:
        length = want
    if offset < 0 or length != want:
        raise ImportModelError(f"{where}: tensor {name!r}: external data of {length} bytes for a tensor of "
                               f"{want} bytes")
    try:
        size = os.path.getsize(path)
        if offset + length > size:
            raise ImportModelError(f"{where}: tensor {name!r}: external data [{offset}, {offset + length}) "
                                   f"beyond the end of {loc!r} ({size} bytes)")
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError as e:
        raise ImportModelError(f"{where}: tensor {name!r}: cannot read external data {loc!r}: "
                               f"{e.strerror or e}") from None
    t.raw_data = data
    del t.external_data[:]
    t.data_location = onnx.TensorProto.DEFAULT


def load(src):
    """(ModelProto with external data read in, text for messages).  ``src``: a path, file bytes or a
    ModelProto (whose external data, if any, is refused: there is no folder to resolve it against)."""
    import onnx
    base = None
    if isinstance(src, onnx.ModelProto):
        model, where = src, "<ModelProto>"
        m2 = onnx.ModelProto()
        m2.CopyFrom(model)
        model = m2
    else:
        data, where = read_model_file(src)
        if not isinstance(src, (bytes, bytearray)):
            base = os.path.dirname(os.path.abspath(os.fspath(src)))
        try:
            model = onnx.load_from_string(data)       # never reads external data itself
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
            raise ImportModelError(f"{where}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.graph.node:
        raise ImportModelError(f"{where}: the ONNX file has no graph nodes")
    total = 0
    for t in _external_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _read_external(t, base, where)
            total += len(t.raw_data)
            if total > 4 << 30:
                raise ImportModelError(f"{where}: more than 4 GiB of external data")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - the checker raises ValidationError and, on odd protos, others
        raise ImportModelError(f"{where}: onnx.checker rejects the model: {str(e).splitlines()[0][:300]}") from None
    return model, where


def opset_of(model) -> int:
    v = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if v is None:
        raise ImportModelError("the model imports no version of the default ONNX domain")
    return int(v)


def to_array(t, where=""):
    from onnx import numpy_helper
    if t.data_location == 1:  # EXTERNAL: load() has read every external tensor in; anything left is refused
        raise ImportModelError(f"{where}: tensor {t.name!r} keeps its data outside the model")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001
        raise ImportModelError(f"{where}: tensor {t.name!r} is unreadable ({type(e).__name__}: "
                               f"{str(e)[:200]})") from None


# ------------------------------------------------------------------------------------------- values
class Const:
    """A constant, one array per world (the same object where the worlds agree)."""
    __slots__ = ("vals",)

    def __init__(self, vals):
        self.vals = tuple(vals)

    @property
    def same(self) -> bool:
        return all(v is self.vals[0] for v in self.vals[1:]) or all(
            v.shape == self.vals[0].shape and np.array_equal(v, self.vals[0]) for v in self.vals[1:])


class Dyn:
    """A run-time tensor: its shape in every world and its dtype."""
    __slots__ = ("shapes", "dtype")

    def __init__(self, shapes, dtype):
        self.shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        self.dtype = np.dtype(dtype)

    @property
    def shape(self):
        return self.shapes[0]


class Node:
    """One node with its attributes decoded (tensors as numpy, strings as str, graphs as GraphProto)."""
    __slots__ = ("op_type", "name", "inputs", "outputs", "attrs", "domain", "proto")

    def __init__(self, proto, where=""):
        import onnx
        self.proto = proto
        self.op_type = proto.op_type
        self.name = proto.name
        self.domain = proto.domain
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        attrs = {}
        for a in proto.attribute:
            try:
                v = onnx.helper.get_attribute_value(a)
            except Exception as e:  # noqa: BLE001
                raise ImportModelError(f"node {proto.name or proto.op_type}: bad attribute {a.name!r} ({e})") from None
            if isinstance(v, onnx.TensorProto):
                v = to_array(v, where)
            elif isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8", "replace") for s in v]
            attrs[a.name] = v
        if self.op_type == "Constant" and self.domain in ("", "ai.onnx"):
            attrs["__value__"] = _constant_value(attrs, self)
        self.attrs = attrs


def _constant_value(attrs, node):
    where = f"node {node.name or '?'} (Constant)"
    keys = [k for k in ("value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                        "value_strings", "sparse_value") if k in attrs]
    if len(keys) != 1:
        raise ImportModelError(f"{where}: needs exactly one value attribute")
    k = keys[0]
    v = attrs[k]
    if k == "sparse_value":
        raise ImportModelError(f"{where}: sparse constants are not supported")
    if k in ("value_float", "value_floats"):
        return np.asarray(v, np.float32)
    if k in ("value_int", "value_ints"):
        return np.asarray(v, np.int64)
    if k in ("value_string", "value_strings"):
        raise ImportModelError(f"{where}: string constants are not supported")
    return np.asarray(v)


def _free_names(g) -> set:
    """Names a subgraph reads from its enclosing scopes."""
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    used = set()
    for n in g.node:
        used.update(x for x in n.input if x)
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                used |= _free_names(sub)
        defined.update(n.output)
    return used - defined


def _subgraphs(proto):
    for a in proto.attribute:
        if a.HasField("g"):
            yield a.g
        yield from a.graphs


def live_nodes(g, needed: set) -> list:
    """The nodes of graph ``g`` that the names in ``needed`` depend on, in order."""
    needed = set(needed)
    live = []
    for n in reversed(g.node):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(x for x in n.input if x)
            for sub in _subgraphs(n):
                needed |= _free_names(sub)
    return live[::-1]


# ------------------------------------------------------------------------------------------- the walk
class Residual:
    """A node that reads run-time values, with global value names."""
    __slots__ = ("op_type", "name", "inputs", "outputs", "attrs", "domain", "proto")

    def __init__(self, node: Node, inputs, outputs):
        self.op_type, self.name, self.attrs, self.domain, self.proto = (node.op_type, node.name, node.attrs,
                                                                         node.domain, node.proto)
        self.inputs, self.outputs = list(inputs), list(outputs)

    def __repr__(self):
        return f"{self.op_type}({', '.join(self.inputs)}) -> {self.outputs}"


class Trace:
    """Walks a model: binds inputs, folds constants, inlines constant control flow, tracks run-time shapes."""

    def __init__(self, model, *, where: str, worlds: int, inputs: dict, bound: dict, opset: int,
                 sym_names: list[str]):
        self.model = model
        self.where = where
        self.W = worlds
        self.sym_names = sym_names
        largest = max((len(t.raw_data) for t in model.graph.initializer), default=0)
        self.ctx = FoldContext(opset=opset, tensor_bytes=max(64 << 20, 2 * largest),
                               total_bytes=max(512 << 20, 8 * largest))
        self.vals: dict = {}
        self.residual: list[Residual] = []
        self.nodes_walked = 0
        self._taken = set()
        self._counts = {}
        self._live = {}
        self._inits = {}
        g = model.graph
        scope = {}
        for t in g.initializer:
            scope[t.name] = self._new(t.name, Const([to_array(t, where)] * worlds))
        for name, arr in bound.items():
            scope[name] = self._new(name, Const([arr] * worlds))
        for name, dyn in inputs.items():
            scope[name] = self._new(name, dyn)
        outs = [o.name for o in g.output]
        self._walk(g, scope, set(outs), depth=0)
        missing = [o for o in outs if o not in scope]
        if missing:
            raise ImportModelError(f"graph outputs {missing} are not produced by any node")
        self.outputs = [scope[o] for o in outs]
        self.output_names = outs

    def _new(self, local: str, value) -> str:
        name = local or "_"
        k = self._counts.get(name, 0)
        base = name
        while name in self._taken:
            k += 1
            name = f"{base}__{k}"
        self._counts[base] = k
        self._taken.add(name)
        self.vals[name] = value
        return name

    def _walk(self, g, scope: dict, needed: set, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ImportModelError("subgraphs nested too deep")
        for t in (g.initializer if depth else []):
            if id(t) not in self._inits:
                self._inits[id(t)] = Const([to_array(t, self.where)] * self.W)
            scope[t.name] = self._new(t.name, self._inits[id(t)])
        key = (id(g), frozenset(needed))
        if key not in self._live:           # a loop body is walked once per trip: decode it once
            self._live[key] = [Node(proto, self.where) for proto in live_nodes(g, needed)]
        for node in self._live[key]:
            self.nodes_walked += 1
            if self.nodes_walked > MAX_NODES:
                raise ImportModelError(f"the graph walks more than {MAX_NODES} nodes (inlined branches and loop "
                                       f"bodies included)")
            self._node(node, scope, depth)

    def _lookup(self, scope, name, node):
        if not name:
            return None
        if name not in scope:
            raise ImportModelError(f"node {node.name or node.op_type}: input {name!r} is not produced by any "
                                   f"earlier node")
        return scope[name]

    def _node(self, node: Node, scope: dict, depth: int) -> None:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise ImportModelError(f"{where}: custom domain {node.domain!r} is not supported")
        gnames = [self._lookup(scope, n, node) for n in node.inputs]
        vals = [self.vals[n] if n else None for n in gnames]
        if node.op_type == "If":
            return self._if(node, vals, scope, depth, where)
        if node.op_type == "Loop":
            return self._loop(node, vals, scope, depth, where)
        if node.op_type in ("Scan", "SequenceMap") or node.op_type.startswith(("Sequence", "Optional")):
            raise ImportModelError(f"{where}: {node.op_type} is not supported")
        if any(isinstance(v, Dyn) for v in vals):
            outs = self._dyn(node, vals, where)
            names = []
            for o, v in zip(node.outputs, outs):
                if o:
                    scope[o] = self._new(o, v)
                names.append(scope[o] if o else "")
            if not all(isinstance(v, Const) for v in outs if v is not None):
                self.residual.append(Residual(node, [n or "" for n in gnames], names))
            return
        outs = self._fold(node, vals)
        for o, v in zip(node.outputs, outs):
            if o:
                if v is None:
                    raise ImportModelError(f"{where}: output {o!r} was not computed")
                scope[o] = self._new(o, v)

    def _fold(self, node, vals) -> list:
        per_world, cache = [], {}
        for w in range(self.W):
            ins = [None if v is None else v.vals[w] for v in vals]
            key = tuple(id(a) for a in ins)
            if key not in cache:
                cache[key] = fold(node, ins, self.ctx)
            per_world.append(cache[key])
        n = len(node.outputs)
        return [Const([pw[k] for pw in per_world]) if k < len(per_world[0]) else None for k in range(n)]

    # ------------------------------------------------------------------------------- control flow
    def _if(self, node, vals, scope, depth, where):
        cond = vals[0]
        if not isinstance(cond, Const):
            raise ImportModelError(f"{where}: If on a run-time value is not supported (only branches whose "
                                   f"condition folds to a constant; bind= fixes inputs such as a sample rate)")
        picks = {bool(np.asarray(v).ravel()[0]) if np.asarray(v).size else None for v in cond.vals}
        if None in picks:
            raise ImportModelError(f"{where}: empty condition")
        if len(picks) > 1:
            raise ImportModelError(f"{where}: the branch taken depends on a dynamic size of the input "
                                   f"({self._syms_hint()}); fix that size with shapes=")
        branch = node.attrs["then_branch" if picks.pop() else "else_branch"]
        inner = ChainMap({}, scope)      # the enclosing names, not copied
        outs = [o.name for o in branch.output]
        self._walk(branch, inner, set(outs), depth + 1)
        if len(outs) != len(node.outputs):
            raise ImportModelError(f"{where}: the branch has {len(outs)} outputs, the node {len(node.outputs)}")
        for o, b in zip(node.outputs, outs):
            if o:
                if b not in inner:
                    raise ImportModelError(f"{where}: branch output {b!r} is not produced")
                scope[o] = inner[b]

    def _syms_hint(self) -> str:
        return ", ".join(self.sym_names) or "none"

    def _loop(self, node, vals, scope, depth, where):
        if any(isinstance(v, Dyn) for v in vals):
            raise ImportModelError(f"{where}: a Loop over run-time values is not supported")
        body = node.attrs["body"]
        m, cond = vals[0], vals[1]
        trips = None
        for v in (m,):
            if v is not None:
                arr = np.asarray(v.vals[0])
                if arr.size != 1 or not v.same:
                    raise ImportModelError(f"{where}: trip count must be one value")
                trips = int(arr.ravel()[0])
        if trips is not None and trips > MAX_LOOP_TRIPS:
            raise final_error(f"{where}: Loop trip count {trips} exceeds the importer's bound ({MAX_LOOP_TRIPS})")
        if any(v is not None and not v.same for v in vals):
            raise ImportModelError(f"{where}: a Loop whose inputs depend on a dynamic size is not supported")
        keep = bool(np.asarray(cond.vals[0]).ravel()[0]) if cond is not None else True
        carried = [v.vals[0] for v in vals[2:]]
        n_carried = len(carried)
        b_in = [i.name for i in body.input]
        b_out = [o.name for o in body.output]
        if len(b_in) != 2 + n_carried or len(b_out) < 1 + n_carried:
            raise ImportModelError(f"{where}: the body's inputs/outputs do not match the loop-carried values")
        scans = [[] for _ in range(len(b_out) - 1 - n_carried)]
        it = 0
        while keep and (trips is None or it < trips):
            if it >= MAX_LOOP_TRIPS:
                raise final_error(f"{where}: Loop runs more than {MAX_LOOP_TRIPS} iterations")
            inner = ChainMap({}, scope)      # the enclosing names, not copied
            inner[b_in[0]] = self._new(b_in[0], Const([np.array(it, np.int64)] * self.W))
            inner[b_in[1]] = self._new(b_in[1], Const([np.array(keep)] * self.W))
            for nm, v in zip(b_in[2:], carried):
                inner[nm] = self._new(nm, Const([v] * self.W))
            self._walk(body, inner, set(b_out), depth + 1)
            outs = []
            for nm in b_out:
                v = self.vals.get(inner.get(nm, ""), None)
                if not isinstance(v, Const):
                    raise ImportModelError(f"{where}: the loop body does not fold to constants")
                outs.append(v.vals[0])
            keep = bool(np.asarray(outs[0]).ravel()[0]) if np.asarray(outs[0]).size else False
            carried = outs[1:1 + n_carried]
            for s, v in zip(scans, outs[1 + n_carried:]):
                s.append(v)
                self.ctx.check(where, (len(s),) + np.shape(v), np.asarray(v).dtype)
            it += 1
        results = carried + [np.stack(s) if s else np.zeros((0,), np.float32) for s in scans]
        for o, v in zip(node.outputs, results):
            if o:
                scope[o] = self._new(o, Const([np.asarray(v)] * self.W))

    # ------------------------------------------------------------------------------- run-time shapes
    def _dyn(self, node, vals, where) -> list:
        """Output values of a node reading run-time tensors: Dyn with per-world shapes, or Const for
        Shape / Size."""
        op = node.op_type
        n_out = len(node.outputs)
        dt = next(v.dtype for v in vals if isinstance(v, Dyn))
        if op == "Shape":
            x = vals[0]
            out = []
            for s in x.shapes:
                n = len(s)
                a, b = node.attrs.get("start", 0), node.attrs.get("end", n)
                a, b = max(-n, min(n, a)), max(-n, min(n, b))
                out.append(np.array(s[slice(a, b)], np.int64))
            return [Const(out)]
        if op == "Size":
            return [Const([np.array(int(np.prod(s, dtype=np.int64)), np.int64) for s in vals[0].shapes])]
        shapes = []
        for w in range(self.W):
            ins = [None if v is None else (v.shapes[w] if isinstance(v, Dyn) else v.vals[w]) for v in vals]
            dyn = [isinstance(v, Dyn) for v in vals]
            try:
                shapes.append(self._shape_rule(node, ins, dyn, where))
            except ImportModelError:
                if w == 0 and self.W > 1 and op in ("Slice", "Gather", "Split") and isinstance(vals[0], Dyn) and \
                        vals[0].shapes[0] != vals[0].shapes[1]:
                    e = ImportModelError(f"{where}: the data is sliced per time step: an unrolled recurrence over "
                                         f"time (e.g. torch's dynamo exporter on nn.RNN) is not supported; export "
                                         f"with the TorchScript-based exporter (dynamo=False) to get an ONNX RNN node")
                    e.final = True
                    raise e from None
                raise
            if op in ("Slice", "Split", "Gather") and w == 0 and self.W > 1 and isinstance(vals[0], Dyn) and \
                    any(0 in s for s in shapes[0] if s is not None):
                e = ImportModelError(f"{where}: the data is sliced per time step: an unrolled recurrence over time "
                                     f"(e.g. torch's dynamo exporter on nn.RNN) is not supported; export with the "
                                     f"TorchScript-based exporter (dynamo=False) to get an ONNX RNN node")
                e.final = True
                raise e
        for k, o in enumerate(node.outputs):
            if o and shapes[0][k] is None:
                raise ImportModelError(f"{where}: {op} on run-time values is not supported (no edgelstm layer kind "
                                       f"computes it)")
        dtypes = self._dtypes(node, vals, dt)
        return [None if not node.outputs[k] or shapes[0][k] is None else
                Dyn([s[k] for s in shapes], dtypes[k]) for k in range(n_out)]

    @staticmethod
    def _dtypes(node, vals, dt):
        import onnx
        op = node.op_type
        if op == "Cast":
            try:
                return [onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs.get("to")))]
            except Exception:
                raise ImportModelError(f"node {node.name}: Cast to an unknown type") from None
        if op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "IsNaN"):
            return [np.dtype(bool)] * len(node.outputs)
        if op in ("ArgMax", "ArgMin", "NonZero"):
            return [np.dtype(np.int64)]
        return [dt] * len(node.outputs)

    def _shape_rule(self, node, ins, dyn, where) -> list:
        """Output shapes of one node in one world (ins: shapes for run-time inputs, arrays for constants)."""
        op = node.op_type
        ctx = self.ctx
        n_out = len(node.outputs)

        def shp(v, k):
            return tuple(v) if dyn[k] else tuple(np.shape(v))
        s0 = shp(ins[0], 0) if ins and ins[0] is not None else None
        if op in _ELEMENTWISE_UNARY or op in ("Cast", "CastLike", "Softmax", "LogSoftmax", "Clip", "LeakyRelu",
                                              "HardSigmoid", "Elu", "Selu", "Softplus", "Softsign", "Gelu",
                                              "PRelu", "BatchNormalization", "InstanceNormalization",
                                              "LayerNormalization", "CumSum", "Hardmax", "HardSwish", "Mish",
                                              "ThresholdedRelu", "Celu", "LpNormalization"):
            out = [s0]
            if op == "Dropout" and n_out > 1:
                out.append(s0)
            if op == "LayerNormalization" and n_out > 1:
                out += [None] * (n_out - 1)
            return out
        if op in _ELEMENTWISE_BINARY or op in ("Max", "Min", "Sum", "Mean", "Where"):
            return [broadcast_shape([shp(v, k) for k, v in enumerate(ins) if v is not None], where)]
        if op == "Transpose":
            perm = node.attrs.get("perm", list(range(len(s0)))[::-1])
            if sorted(perm) != list(range(len(s0))):
                raise ImportModelError(f"{where}: perm {perm} for rank {len(s0)}")
            return [tuple(s0[p] for p in perm)]
        if op == "Reshape":
            return [reshape_shape(node, ins, ctx, s0, where)]
        if op == "Flatten":
            axis = node.attrs.get("axis", 1) % (len(s0) + 1)
            return [(int(np.prod(s0[:axis], dtype=np.int64)), int(np.prod(s0[axis:], dtype=np.int64)))]
        if op == "Squeeze":
            return [squeeze_shape(node, ins, ctx, s0, where)]
        if op == "Unsqueeze":
            return [unsqueeze_shape(node, ins, ctx, s0, where)]
        if op == "Slice":
            idx = slice_index(node, ins, ctx, s0, where)
            return [tuple(len(range(*sl.indices(d))) for sl, d in zip(idx, s0))]
        if op == "Gather":
            if dyn[1]:
                raise ImportModelError(f"{where}: indices computed at run time are not supported")
            axis = node.attrs.get("axis", 0) % max(len(s0), 1)
            idx = np.asarray(ins[1])
            n = s0[axis]
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise ImportModelError(f"{where}: index out of range for an axis of size {n}")
            return [s0[:axis] + idx.shape + s0[axis + 1:]]
        if op == "Concat":
            shapes = [shp(v, k) for k, v in enumerate(ins) if v is not None]
            axis = node.attrs.get("axis", 0) % max(len(shapes[0]), 1)
            for s in shapes:
                if len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
                    raise ImportModelError(f"{where}: shapes {shapes} do not concatenate on axis {axis}")
            out = list(shapes[0])
            out[axis] = sum(s[axis] for s in shapes)
            return [tuple(out)]
        if op == "Split":
            axis = node.attrs.get("axis", 0) % len(s0)
            sizes = split_sizes(node, ins, ctx, s0[axis], where)
            return [s0[:axis] + (k,) + s0[axis + 1:] for k in sizes]
        if op == "Expand":
            if dyn[1]:
                raise ImportModelError(f"{where}: a shape computed at run time")
            return [broadcast_shape([s0, tuple(int(v) for v in np.asarray(ins[1]).ravel())], where)]
        if op == "Tile":
            reps = [int(v) for v in np.asarray(ins[1]).ravel()]
            return [tuple(d * r for d, r in zip(s0, reps))]
        if op == "Pad":
            begin, end, _, _ = pad_params(node, ins, ctx, len(s0), where)
            return [tuple(d + b + e for d, b, e in zip(s0, begin, end))]
        if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
            return [self._conv_shape(node, ins, dyn, s0, where)]
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            return [s0[:2] + (1,) * (len(s0) - 2)]
        if op == "MatMul":
            a, b = s0, shp(ins[1], 1)
            a2 = (1,) + a if len(a) == 1 else a
            b2 = b + (1,) if len(b) == 1 else b
            if len(a2) < 2 or len(b2) < 2 or a2[-1] != b2[-2]:
                raise ImportModelError(f"{where}: shapes {a} and {b} do not multiply")
            out = broadcast_shape([a2[:-2], b2[:-2]], where) + (a2[-2], b2[-1])
            if len(a) == 1:
                out = out[:-2] + out[-1:]
            if len(b) == 1:
                out = out[:-1]
            return [out]
        if op == "Gemm":
            a, b = s0, shp(ins[1], 1)
            if len(a) != 2 or len(b) != 2:
                raise ImportModelError(f"{where}: Gemm needs rank-2 inputs")
            a = a[::-1] if node.attrs.get("transA", 0) else a
            b = b[::-1] if node.attrs.get("transB", 0) else b
            if a[1] != b[0]:
                raise ImportModelError(f"{where}: shapes do not multiply")
            return [(a[0], b[1])]
        if op in ("LSTM", "GRU", "RNN"):
            return self._rnn_shapes(node, ins, dyn, s0, where)
        if op.startswith("Reduce"):
            input_from = 13 if op == "ReduceSum" else 18
            if ctx.opset >= input_from:
                axes = [int(v) for v in np.asarray(ins[1]).ravel()] if len(ins) > 1 and ins[1] is not None else []
            else:
                axes = list(node.attrs.get("axes", []))
            if not axes and node.attrs.get("noop_with_empty_axes", 0):
                return [s0]
            axes = {a % len(s0) for a in axes} if axes else set(range(len(s0)))
            keep = node.attrs.get("keepdims", 1)
            return [tuple(1 if k in axes else d for k, d in enumerate(s0) if keep or k not in axes)]
        if op in ("ArgMax", "ArgMin"):
            axis = node.attrs.get("axis", 0) % len(s0)
            keep = node.attrs.get("keepdims", 1)
            return [tuple(1 if k == axis else d for k, d in enumerate(s0) if keep or k != axis)]
        if op == "Identity":
            return [s0]
        return [None] * n_out           # unknown: refused by name if the model needs it

    def _conv_shape(self, node, ins, dyn, s0, where):
        op = node.op_type
        if op == "ConvTranspose":
            raise ImportModelError(f"{where}: ConvTranspose is not supported")
        if len(s0) < 3:
            raise ImportModelError(f"{where}: input of rank {len(s0)}")
        nsp = len(s0) - 2
        if op == "Conv":
            if dyn[1]:
                raise ImportModelError(f"{where}: weights computed at run time")
            w = np.shape(ins[1])
            if len(w) != len(s0):
                raise ImportModelError(f"{where}: weight of rank {len(w)} for input rank {len(s0)}")
            kernel = list(w[2:])
            group = node.attrs.get("group", 1)
            if group < 1 or s0[1] != w[1] * group or w[0] % group:
                raise ImportModelError(f"{where}: {s0[1]} input channels do not match the weight {w} with "
                                       f"group {group}")
            out_c = w[0]
        else:
            kernel = list(node.attrs.get("kernel_shape", []))
            out_c = s0[1]
        if len(kernel) != nsp:
            raise ImportModelError(f"{where}: kernel_shape {kernel} for {nsp} spatial axes")
        out = [g[4] for g in conv_geometry(node.attrs, s0[2:], kernel, where)]
        return (s0[0], out_c) + tuple(out)

    @staticmethod
    def _rnn_shapes(node, ins, dyn, s0, where):
        a = node.attrs
        if len(s0) != 3:
            raise ImportModelError(f"{where}: X of rank {len(s0)}")
        layout = a.get("layout", 0)
        T, B = (s0[0], s0[1]) if layout == 0 else (s0[1], s0[0])
        d = a.get("direction", "forward")
        n_dir = 2 if d == "bidirectional" else 1
        H = a.get("hidden_size")
        if H is None and len(ins) > 2 and ins[2] is not None and not dyn[2]:
            H = np.shape(ins[2])[-1]
        if not isinstance(H, int) or H < 1:
            raise ImportModelError(f"{where}: hidden_size missing")
        y = (T, n_dir, B, H) if layout == 0 else (B, T, n_dir, H)
        st = (n_dir, B, H) if layout == 0 else (B, n_dir, H)
        out = [y, st]
        if node.op_type == "LSTM":
            out.append(st)
        return out[:len(node.outputs)] + [None] * max(0, len(node.outputs) - len(out))


def conv_geometry(attrs, spatial, kernel, where) -> list[tuple]:
    """Per spatial axis (stride, dilation, pad_begin, pad_end, out_len) of a Conv / pooling node."""
    nsp = len(spatial)
    strides = list(attrs.get("strides", [1] * nsp))
    dil = list(attrs.get("dilations", [1] * nsp))
    pads = list(attrs.get("pads", [0] * 2 * nsp))
    auto = attrs.get("auto_pad", "NOTSET")
    if len(strides) != nsp or len(dil) != nsp or len(pads) != 2 * nsp or min(strides + dil + list(kernel)) < 1 or \
            min(pads) < 0:
        raise ImportModelError(f"{where}: bad strides / dilations / pads")
    if attrs.get("ceil_mode", 0):
        raise ImportModelError(f"{where}: ceil_mode is not supported")
    out = []
    for k in range(nsp):
        n = spatial[k]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // strides[k])
            total = max((o - 1) * strides[k] + dil[k] * (kernel[k] - 1) + 1 - n, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[k], pads[k + nsp] = lo, total - lo
        elif auto == "VALID":
            pads[k] = pads[k + nsp] = 0
        elif auto != "NOTSET":
            raise ImportModelError(f"{where}: auto_pad {auto!r}")
        out.append((strides[k], dil[k], pads[k], pads[k + nsp],
                    conv_out_len(n, kernel[k], strides[k], dil[k], pads[k], pads[k + nsp], where)))
    return out


_ELEMENTWISE_UNARY = {"Identity", "Dropout", "Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Sqrt", "Exp", "Log",
                      "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Erf", "Not", "IsNaN"}
_ELEMENTWISE_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
                       "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "BitShift"}
