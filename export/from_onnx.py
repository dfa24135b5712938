"""ONNX models to the edgelstm IR: the files packages ship, not only tidy exports.  onnx is imported inside the
functions only.

load and check -> bind fixed inputs -> fold constants (opset-aware, bounded; constant If / Loop resolved) ->
recognize unrolled cells -> pair state inputs with state outputs -> map the rest onto layer kinds (LSTM / GRU /
RNN, Dense, Conv1D, Pad, Magnitude, Activation) or refuse it by name -> validate.

- ``bind={"sr": 16000}`` fixes inputs as constants (then the branches they select fold away).
- State inputs (recurrent state fed back by the caller: silero-vad's ``state`` -> ``stateN``, ``h``/``c`` ->
  ``hn``/``cn``, packed states of several layers in one tensor) are found by name and by where they flow, or
  given as ``state=[("state", "stateN")]``; the imported model keeps that state itself (``stream()`` carries it,
  ``run`` starts from zeros or ``initial_state=``).
- The data layout follows from the declared input shape and the ops on the path: the time axis is the axis that
  reaches the recurrent node's sequence axis.  A graph where one call is one step (the recurrent nodes see one
  time step and get their state from state inputs) becomes a model whose frame is that call's whole input,
  flattened: ``stream().step(x)`` per call, ``run(X)`` with X (T, frame).  Sequence graphs take ``run(X)`` with X
  (T, F) or (B, T, F) whatever the file's layout.
- ``shapes={"input": (1, 576)}`` fixes dynamic axes the file leaves open (e.g. a one-step audio model's number
  of samples per call).
"""
from __future__ import annotations

import re

import numpy as np

from edgelstm.errors import EdgeLSTMError, ImportModelError
from edgelstm.ir.model import ModelSpec
from edgelstm.runtime import Model, State

from .onnx_graph import Dyn, Trace, load, opset_of

_BATCH_NAMES = re.compile(r"^(n|b|bs|batch|batch_?size|batches|num_?batch|unk__\d+_?batch)$", re.I)
_RNN_OPS = ("LSTM", "GRU", "RNN")
_INDEX_OPS = {"Identity", "Gather", "Slice", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Split", "Concat",
              "Cast", "Expand", "If", "Shape", "Size"}


def _elem_dtype(vi):
    import onnx
    t = vi.type.tensor_type.elem_type
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)) if t else np.dtype(np.float32)
    except Exception:
        raise ImportModelError(f"input {vi.name!r}: unknown element type {t}") from None


def _dims(vi):
    """Declared dims: int, or a str (dim_param, possibly '') for a dynamic one; None if no shape."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]


def _all_nodes(g, out=None, links=None):
    """Every node of g and its subgraphs, and If/Loop output -> branch output links."""
    out = [] if out is None else out
    links = {} if links is None else links
    for n in g.node:
        out.append(n)
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _all_nodes(sub, out, links)
                if n.op_type == "If":
                    for o, b in zip(n.output, sub.output):
                        links.setdefault(b.name, set()).add(o)
    return out, links


def _flows_to_state_slots(name, nodes, links) -> bool:
    """Does input ``name`` reach recurrent initial-state slots through index ops only (and nothing else)?"""
    readers = {}
    for n in nodes:
        for s, x in enumerate(n.input):
            if x:
                readers.setdefault(x, []).append((n, s))
    seen, todo, hit = set(), [name], False
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        todo.extend(links.get(v, ()))
        for n, s in readers.get(v, []):
            if n.op_type in _RNN_OPS:
                if s < 5:
                    return False
                hit = True
            elif n.op_type in ("Shape", "Size"):
                continue
            elif n.op_type in _INDEX_OPS and not (n.op_type in ("Reshape", "Expand", "Gather", "Slice") and s > 0):
                todo.extend(o for o in n.output if o)
            else:
                return False
    return hit


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _name_pairs(inputs, outputs) -> dict:
    """State input -> output by name: h -> hn, state -> stateN, h0 -> h1/hn, x_in -> x_out, in_x -> out_x."""
    outs = {_norm(o): o for o in outputs}
    pairs = {}
    for i in inputs:
        n, low = _norm(i), i.lower()
        cands = [n + s for s in ("n", "out", "new", "next", "1")]
        cands += [n[:-1] + r for r in ("n", "1", "out")] if n.endswith("0") else []
        cands += [_norm(low[:-3] + "_out")] if re.search(r"[_.\-]in$", low) else []
        cands += [_norm("out_" + low[3:])] if re.match(r"^in[_.\-]", low) else []
        cands += ["next" + n, "new" + n]
        hit = [outs[c] for c in cands if c in outs and c != n]
        if hit:
            pairs[i] = hit[0]
    return pairs


def _classify(model, bind, state, shapes):
    """(data input, state inputs, lengths input or None) of the graph's unbound inputs."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    free = [i for i in g.input if i.name not in inits and i.name not in bind]
    names = [i.name for i in free]
    for k in list(bind) + [p[0] for p in state] + list(shapes):
        if k not in [i.name for i in g.input]:
            raise ImportModelError(f"{k!r} is not an input of the graph (inputs: {[i.name for i in g.input]})")
    for p in state:
        if p[1] not in [o.name for o in g.output]:
            raise ImportModelError(f"{p[1]!r} is not an output of the graph (outputs: {[o.name for o in g.output]})")
    nodes, links = _all_nodes(g)
    lengths = None
    for n in nodes:
        if n.op_type in _RNN_OPS and len(n.input) > 4 and n.input[4] in names:
            lengths = n.input[4]
    states = [p[0] for p in state]
    by_name = _name_pairs([n for n in names if n != lengths], [o.name for o in g.output])
    for i in free:
        if i.name in states or i.name == lengths or _elem_dtype(i).kind != "f":
            continue
        if _flows_to_state_slots(i.name, nodes, links) or (i.name in by_name and len(free) > 1):
            states.append(i.name)
    rest = [i for i in free if i.name not in states and i.name != lengths]
    ints = [i.name for i in rest if _elem_dtype(i).kind != "f"]
    if ints:
        raise ImportModelError(f"inputs {ints} are not float data: fix them with bind= (e.g. bind={{{ints[0]!r}: "
                               f"16000}} for a sample rate)")
    if len(rest) > 1:
        states += _states_after_folding(model, bind, rest, states, lengths, shapes)
        rest = [i for i in rest if i.name not in states]
    if len(rest) != 1:
        raise ImportModelError(f"expected exactly one data input, found {[i.name for i in rest]}; state inputs "
                               f"found: {states}; pass bind= for inputs that are fixed and state=[(input, output)] "
                               f"for recurrent state fed back by the caller")
    return rest[0], states, lengths


def _states_after_folding(model, bind, candidates, states, lengths, shapes) -> list:
    """Which of several float inputs are recurrent state, seen on the folded graph with unrolled cells
    recognized: those that reach nothing but recurrent initial-state slots through layout ops."""
    from .onnx_cells import rewrite_unrolled_cells
    vis = {i.name: i for i in model.graph.input}
    inputs = {}
    for name in [c.name for c in candidates] + states:
        try:
            dims = _input_shapes(vis[name], shapes.get(name), data=False, where="")
        except ImportModelError:
            return []
        inputs[name] = Dyn([dims], _elem_dtype(vis[name]))
    if lengths:
        inputs[lengths] = Dyn([[1]], np.int32)
    try:
        trace = Trace(model, where="", worlds=1, inputs=inputs, bound=_bound(model, bind), opset=opset_of(model),
                      sym_names=[])
        rewrite_unrolled_cells(trace)
    except ImportModelError:
        return []
    readers = {}
    for n in trace.residual:
        for s, x in enumerate(n.inputs):
            if x:
                readers.setdefault(x, []).append((n, s))
    found = []
    for c in candidates:
        todo, seen, ok, hit = [c.name], set(), True, False
        while todo and ok:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            for n, s in readers.get(v, []):
                if n.op_type in _RNN_OPS and s >= 5:
                    hit = True
                elif n.op_type in _INDEX_OPS and s == 0 or n.op_type == "Concat":
                    todo.extend(o for o in n.outputs if o)
                else:
                    ok = False
        if ok and hit:
            found.append(c.name)
    return found if len(found) < len(candidates) else []


def _input_shapes(vi, fixed, *, data: bool, where):
    """Per input: list of dims, an int or a symbol name (data input only) for each axis."""
    dims = _dims(vi)
    if fixed is not None:
        if dims is not None and len(fixed) != len(dims):
            raise ImportModelError(f"shapes[{vi.name!r}] has rank {len(fixed)}, the input rank {len(dims)}")
        if any(not isinstance(d, (int, np.integer)) or d < 1 for d in fixed):
            raise ImportModelError(f"shapes[{vi.name!r}] must be positive ints, got {fixed}")
        return [int(d) for d in fixed]
    if dims is None:
        raise ImportModelError(f"{where}: input {vi.name!r} has no declared shape; give it with shapes=")
    if not data:
        return [d if isinstance(d, int) and d > 0 else 1 for d in dims]
    out = []
    for k, d in enumerate(dims):
        last = k == len(dims) - 1
        if last and len(dims) > 1 or len(dims) == 1:
            if not isinstance(d, int) or d < 1:
                raise ImportModelError(f"{where}: input {vi.name!r} axis {k} ({d or 'unnamed'}) is dynamic; one "
                                       f"step's size must be known: give it with shapes={{{vi.name!r}: (...)}}")
            out.append(d)
        elif isinstance(d, str) and _BATCH_NAMES.match(d):
            out.append(1)
        elif len(dims) <= 3 or not isinstance(d, int) or d < 1:
            out.append(f"{vi.name}[{k}]" + (f" ({d})" if isinstance(d, str) and d else ""))
        else:
            out.append(d)
    return out


def _trace(model, where, bind, data, states, lengths, shapes, *, keep_fixed):
    opset = opset_of(model)
    g = model.graph
    vis = {i.name: i for i in g.input}
    dims = _input_shapes(data, shapes.get(data.name), data=True, where=where)
    if keep_fixed:
        declared = _dims(data) or []
        dims = [d if isinstance(d, int) or not isinstance(declared[k], int) or declared[k] < 1 else declared[k]
                for k, d in enumerate(dims)] if shapes.get(data.name) is None else dims
    syms = [d for d in dims if isinstance(d, str)]
    W = 1 + len(syms)
    inputs = {data.name: Dyn([[2 if d == s and w == j + 1 else (1 if isinstance(d, str) else d) for d in dims]
                              for w in range(W) for j, s in [(w - 1, syms[w - 1] if w else None)]],
                             _elem_dtype(data))}
    for s in states:
        sd = _input_shapes(vis[s], shapes.get(s), data=False, where=where)
        inputs[s] = Dyn([sd] * W, _elem_dtype(vis[s]))
    if lengths:
        inputs[lengths] = Dyn([[1]] * W, np.int32)
    bound = _bound(model, bind)
    return Trace(model, where=where, worlds=W, inputs=inputs, bound=bound, opset=opset, sym_names=syms), syms


def _bound(model, bind) -> dict:
    vis = {i.name: i for i in model.graph.input}
    bound = {}
    for k, v in bind.items():
        vi = vis[k]
        try:
            arr = np.asarray(v, dtype=_elem_dtype(vi))
        except (TypeError, ValueError):
            raise ImportModelError(f"bind[{k!r}]: cannot make a {_elem_dtype(vi)} tensor of {v!r}") from None
        decl = _dims(vi)
        if decl is not None and len(decl) != arr.ndim:
            if arr.size == 1 and int(np.prod([d for d in decl if isinstance(d, int)] or [1])) == 1:
                arr = arr.reshape([1] * len(decl))
            else:
                raise ImportModelError(f"bind[{k!r}]: shape {arr.shape} for an input of rank {len(decl)}")
        bound[k] = arr
    return bound


def _time_world(trace, syms, data_name):
    """Which world varies the time axis (None: no time axis, a one-step graph)."""
    t_worlds = set()
    rnn = [n for n in trace.residual if n.op_type in _RNN_OPS]
    for n in rnn:
        x = trace.vals[n.inputs[0]]
        s_ax = 0 if n.attrs.get("layout", 0) == 0 else 1
        t_worlds |= {w for w in range(1, trace.W) if x.shapes[w][s_ax] != x.shapes[0][s_ax]}
    if len(t_worlds) > 1:
        raise ImportModelError(f"the recurrent nodes' sequence axes depend on several input axes "
                               f"({[syms[w - 1] for w in sorted(t_worlds)]})")
    if t_worlds:
        return t_worlds.pop()
    if rnn or not syms:
        return None
    return 1          # no recurrent node: the first dynamic axis is the time axis (per-step layers only)


def from_onnx(src, *, bind: dict | None = None, state=None, shapes: dict | None = None) -> Model:
    """Import an ONNX model (a path, file bytes or an ``onnx.ModelProto``) into a runnable float32
    ``edgelstm.Model``; see the module docstring.  ``bind``: {input: value} fixed at import; ``state``: [(state
    input, state output), ...] pairs (found automatically when names or data flow tell); ``shapes``: {input:
    dims} for axes the file leaves dynamic.  The returned model's ``onnx_io`` tells what was found (data
    input, one-step or sequence graph, frame size, state pairs).  Unsupported ops and attributes raise
    ``ImportModelError`` naming them; so does anything unreadable."""
    spec, initial, io = read_onnx(src, bind=bind, state=state, shapes=shapes)
    try:
        m = Model(spec, initial_state=initial)
    except EdgeLSTMError:
        raise
    except Exception as e:  # noqa: BLE001 - a layer kind this runtime cannot prepare yet must not leak out raw
        kinds = sorted({layer.kind for layer in spec.layers})
        raise ImportModelError(f"the imported model (layers {kinds}) cannot be prepared by this runtime "
                               f"({type(e).__name__}: {str(e)[:200]})") from None
    m.onnx_io = io
    return m


def read_onnx(src, *, bind: dict | None = None, state=None, shapes: dict | None = None):
    """from_onnx without building the runnable Model: (ModelSpec, initial State or None, io dict)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportModelError("from_onnx needs the 'onnx' package: pip install 'edgelstm[onnx]'") from None
    bind = dict(bind or {})
    shapes = dict(shapes or {})
    state = [tuple(p) for p in (state or [])]
    if any(len(p) != 2 for p in state):
        raise ImportModelError("state= takes (input name, output name) pairs")
    model, where = load(src)
    try:
        return _import(model, where, bind, state, shapes)
    except EdgeLSTMError as e:
        if isinstance(e, ImportModelError):
            msg = str(e)
            raise ImportModelError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        raise ImportModelError(f"{where}: {type(e).__name__}: {e}") from None
    except (MemoryError, RecursionError):
        raise ImportModelError(f"{where}: the model is too large or too deep to read") from None
    except Exception as e:  # noqa: BLE001 - a malformed graph must end as an edgelstm error, whatever trips on it
        raise ImportModelError(f"{where}: malformed ONNX model ({type(e).__name__}: {str(e)[:300]})") from None


def _import(model, where, bind, state, shapes):
    from .onnx_cells import rewrite_unrolled_cells
    from .onnx_lower import Frame, Lowering, StateOut
    data, states, lengths = _classify(model, bind, state, shapes)
    try:
        trace, syms = _trace(model, where, bind, data, states, lengths, shapes, keep_fixed=False)
    except ImportModelError as first:
        if getattr(first, "final", False):
            raise
        try:       # a graph that hard-codes its declared sizes: keep the declared fixed axes fixed
            trace, syms = _trace(model, where, bind, data, states, lengths, shapes, keep_fixed=True)
        except ImportModelError:
            raise first from None
    trace.data_name = data.name
    rewrite_unrolled_cells(trace)
    tw = _time_world(trace, syms, data.name)
    low = Lowering(trace, data=data.name, states=states, lengths=lengths, t_world=tw, where=where)
    low.run()
    out_vals = [low.env.get(g, trace.vals.get(g)) for g in trace.outputs]
    # pair state inputs with the outputs that return their elements
    pairs = {}
    size = {s: int(np.prod(trace.vals[s].shape)) for s in states}
    for s in states:
        want = np.full(size[s], -1, np.int64)
        for e, gid in low.feeds[s].items():
            want[e] = gid
        if not low.feeds[s]:
            raise ImportModelError(f"state input {s!r} feeds no recurrent state")
        matches = [name for name, v in zip(trace.output_names, out_vals)
                   if isinstance(v, StateOut) and v.ids.size == want.size and np.array_equal(v.ids.ravel(), want)]
        given = [p[1] for p in state if p[0] == s]
        if given:
            if given[0] not in matches:
                raise ImportModelError(f"state=({s!r}, {given[0]!r}): that output does not return the state the "
                                       f"input feeds, element for element")
            pairs[s] = given[0]
        elif matches:
            pairs[s] = matches[0]
        else:
            raise ImportModelError(f"state input {s!r}: no graph output returns the recurrent state it feeds, "
                                   f"element for element (outputs: {trace.output_names})")
    paired = set(pairs.values())
    data_outs = [(n, v) for n, v in zip(trace.output_names, out_vals)
                 if n not in paired and (isinstance(v, Frame) or (isinstance(v, StateOut) and v.frame is not None))]
    if not low.layers:
        raise ImportModelError("the graph maps onto no layer (no LSTM, GRU, RNN, Gemm/MatMul or conv on the data "
                               "path)")
    if data_outs:
        name, v = data_outs[0]
        fr = v.frame if isinstance(v, StateOut) else v
        n = fr.idx.size
        want = np.arange(n).reshape(fr.idx.shape)
        if fr.end != low.epoch:
            raise ImportModelError(f"graph output {name!r} is not the output of the last layer")
        low._gather(fr, want, f"graph output {name!r}")
    else:
        finals = [v for v in out_vals if isinstance(v, StateOut)]
        if not finals or tw is None:
            raise ImportModelError(f"no graph output carries the data through the model (outputs: "
                                   f"{trace.output_names})")
    low.finish()
    initial = None
    if any(s is not None for s in low.initial):
        initial = State([[{n: np.zeros(shape, np.float32) for n, shape in layer.state_shapes().items()}
                          for _ in range(2 if layer.bidirectional else 1)] for layer in low.layers])
        for k, dirs in enumerate(low.initial):
            for d, entry in enumerate(dirs or []):
                initial[k][d].update({n: np.asarray(v, np.float32) for n, v in entry.items()})
    io = {"data_input": data.name, "one_step": tw is None, "frame": low.in_size,
                 "output": data_outs[0][0] if data_outs else None, "state_pairs": sorted(pairs.items()),
                 "bound": sorted(bind), "lengths_input": lengths,
                 "other_outputs": [n for n, _ in data_outs[1:]]}
    return ModelSpec(layers=low.layers), initial, io
