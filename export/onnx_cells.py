"""Unrolled recurrent cells (LSTM, GRU) recognized as cells.

Exporters that trace an ``LSTMCell`` (torch's dynamo exporter, silero-vad's ``op18_ifless`` file) write it as
element-wise ops: ``gates = x W_ih^T + b_ih + h W_hh^T + b_hh`` (Gemm / MatMul + Add), ``Split`` (or Slices) into
four chunks, Sigmoid / Tanh on them, and ``c' = f * c + i * g``, ``h' = o * tanh(c')``.  The matcher starts from
every ``h' = Mul(Sigmoid(.), Tanh(c'))``, follows the pattern back (Add and Mul in either operand order), tells
the gates apart by their role in the equations (not by their position in the Split), tells x from h by which
graph input each one comes from, and replaces the cell by the one-step ONNX LSTM node it computes (X, W, R, B in
ONNX's i, o, f, c gate order; initial_h / initial_c = h, c; Y_h / Y_c = h', c').  The rest of the importer then
treats it as any LSTM node: its state is paired with the state inputs and outputs as usual.
"""
from __future__ import annotations

import numpy as np

from .onnx_graph import Const, Dyn


class _Synth:
    """A residual node made by the importer."""

    def __init__(self, op, inputs, outputs, attrs=None, name=""):
        self.op_type, self.inputs, self.outputs = op, list(inputs), list(outputs)
        self.attrs, self.name, self.domain, self.proto = dict(attrs or {}), name, "", None

    def __repr__(self):
        return f"{self.op_type}({', '.join(self.inputs)}) -> {self.outputs}"


class _Graph:
    def __init__(self, trace):
        self.t = trace
        self.prod = {o: n for n in trace.residual for o in n.outputs if o}

    def node(self, name, op=None):
        n = self.prod.get(name)
        if n is None or (op is not None and n.op_type not in ((op,) if isinstance(op, str) else op)):
            return None
        return n

    def const(self, name):
        v = self.t.vals.get(name)
        return v.vals[0] if isinstance(v, Const) else None


_LAYOUT = ("Squeeze", "Unsqueeze", "Reshape", "Slice", "Gather", "Transpose", "Identity", "Split", "Flatten")


def _root(g: _Graph, name):
    """The value ``name`` is read from through layout ops only."""
    for _ in range(64):
        n = g.node(name, _LAYOUT)
        if n is None:
            return name
        name = n.inputs[0]
    return name


def _lin(g: _Graph, name):
    """A value computed as v @ W (+ b): (v, W (O, I) float64, b (O,)) or None."""
    n = g.node(name, ("Gemm", "MatMul", "Add"))
    if n is None:
        return None
    if n.op_type == "Add":
        for k in (0, 1):
            inner, c = n.inputs[k], g.const(n.inputs[1 - k])
            if c is not None:
                lin = _lin(g, inner)
                if lin is not None and c.size in (1, lin[1].shape[0]):
                    return lin[0], lin[1], lin[2] + np.broadcast_to(c.astype(np.float64).ravel(), lin[2].shape)
        return None
    w = g.const(n.inputs[1])
    if w is None or w.ndim != 2 or g.const(n.inputs[0]) is not None:
        return None
    if n.op_type == "MatMul":
        return n.inputs[0], w.T.astype(np.float64), np.zeros(w.shape[1])
    a = n.attrs
    if a.get("transA", 0):
        return None
    w = (w if a.get("transB", 0) else w.T).astype(np.float64) * a.get("alpha", 1.0)
    b = np.zeros(w.shape[0])
    if len(n.inputs) > 2 and n.inputs[2]:
        c = g.const(n.inputs[2])
        if c is None or c.size not in (1, w.shape[0]):
            return None
        b = np.broadcast_to(c.astype(np.float64).ravel() * a.get("beta", 1.0), (w.shape[0],)).copy()
    return n.inputs[0], w, b


def _act_of(g, name, op):
    n = g.node(name, op)
    return n.inputs[0] if n is not None else None


def _pairs(g, name, op):
    """The two operands of ``name = op(a, b)`` in both orders."""
    n = g.node(name, op)
    if n is None or len(n.inputs) != 2:
        return []
    return [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])]


def _chunk(g, name):
    """name is chunk k of a gates value (Split output k, or a Slice on the last axis): (gates, start, stop)."""
    n = g.node(name, ("Split", "Slice"))
    if n is None:
        return None
    src = g.t.vals.get(n.inputs[0])
    if not isinstance(src, Dyn):
        return None
    shape = src.shape
    if n.op_type == "Split":
        out_shapes = [g.t.vals[o].shape for o in n.outputs]
        axis = n.attrs.get("axis", 0) % len(shape)
        if axis != len(shape) - 1:
            return None
        k = n.outputs.index(name)
        start = sum(s[axis] for s in out_shapes[:k])
        return n.inputs[0], start, start + out_shapes[k][axis]
    out = g.t.vals[name].shape
    diff = [a for a, (p, q) in enumerate(zip(shape, out)) if p != q]
    if diff != [len(shape) - 1]:
        return None
    from .onnx_fold import slice_index
    idx = slice_index(n, [None] + [g.const(i) if i else None for i in n.inputs[1:]], g.t.ctx, shape, "")
    sl = idx[-1]
    if sl.step != 1:
        return None
    return n.inputs[0], sl.start, sl.stop


def _match_lstm(g: _Graph, h_new):
    """The LSTM cell computing ``h_new``, or None: dict of x, h, c, c_new, W (4H, I), R (4H, H), b (4H,) in
    the IR gate order i, f, g, o."""
    for o_sig, tanh_c in _pairs(g, h_new, "Mul"):
        c_new = _act_of(g, tanh_c, "Tanh")
        o_pre = _act_of(g, o_sig, "Sigmoid")
        if c_new is None or o_pre is None:
            continue
        for fc, ig in _pairs(g, c_new, "Add"):
            for f_sig, c_prev in _pairs(g, fc, "Mul"):
                f_pre = _act_of(g, f_sig, "Sigmoid")
                if f_pre is None:
                    continue
                for i_sig, g_tanh in _pairs(g, ig, "Mul"):
                    i_pre, g_pre = _act_of(g, i_sig, "Sigmoid"), _act_of(g, g_tanh, "Tanh")
                    if i_pre is None or g_pre is None:
                        continue
                    chunks = [_chunk(g, v) for v in (i_pre, f_pre, g_pre, o_pre)]
                    if None in chunks or len({c[0] for c in chunks}) != 1:
                        continue
                    cell = _gates(g, chunks, c_prev, c_new)
                    if cell is not None:
                        return cell
    return None


def _gates(g, chunks, c_prev, c_new):
    gates = chunks[0][0]
    H = chunks[0][2] - chunks[0][1]
    if any(c[2] - c[1] != H for c in chunks) or sorted(c[1] for c in chunks) != [0, H, 2 * H, 3 * H]:
        return None
    # gates = a sum of v @ W (+ b) terms and constants, in any nesting (torch: Gemm + Gemm; Keras: MatMul +
    # MatMul + bias)
    terms, bias, todo = [], 0.0, [gates]
    while todo:
        v = todo.pop()
        c = g.const(v)
        lin = _lin(g, v) if c is None else None
        if c is not None:
            bias = bias + c.astype(np.float64).ravel()
        elif lin is not None:
            terms.append(lin)
        elif g.node(v, "Add") is not None and len(terms) + len(todo) < 8:
            todo.extend(g.node(v).inputs)
        else:
            return None
    if len(terms) != 2:
        return None
    terms[0] = (terms[0][0], terms[0][1], terms[0][2] + np.broadcast_to(bias, terms[0][2].shape))
    # h is read from where c is read (the same state tensor, through layout ops), x from elsewhere
    roots = [_root(g, t[0]) for t in terms]
    state = _root(g, c_prev)
    if roots[1] == state and roots[0] != state:
        (x, wx, bx), (h, wh, bh) = terms
    elif roots[0] == state and roots[1] != state:
        (h, wh, bh), (x, wx, bx) = terms
    else:
        return None
    if wh.shape != (4 * H, H) or wx.shape[0] != 4 * H:
        return None
    rows = [np.arange(c[1], c[2]) for c in chunks]                  # i, f, g, o rows of the gates vector
    order = np.concatenate(rows)
    return {"x": x, "h": h, "c": c_prev, "c_new": c_new, "H": H, "W": wx[order], "R": wh[order],
            "b": (bx + bh)[order]}


def _is_one(g, name):
    c = g.const(name)
    return c is not None and c.size == 1 and float(c.ravel()[0]) == 1.0


def _gru_update(g, h_new):
    """h' = (1 - z) * n + z * h  or  n + z * (h - n): (z_pre, n, h) or None."""
    for a, b in _pairs(g, h_new, "Add"):
        # (1 - z) * n + z * h
        for p, n in _pairs(g, a, "Mul"):
            sub = g.node(p, "Sub")
            if sub is None or not _is_one(g, sub.inputs[0]):
                continue
            z_sig = sub.inputs[1]
            for z2, h in _pairs(g, b, "Mul"):
                if z2 == z_sig and g.node(z_sig, "Sigmoid") is not None:
                    return g.node(z_sig).inputs[0], n, h
        # n + z * (h - n)
        n = a
        for z_sig, d in _pairs(g, b, "Mul"):
            sub = g.node(d, "Sub")
            if sub is not None and sub.inputs[1] == n and g.node(z_sig, "Sigmoid") is not None:
                return g.node(z_sig).inputs[0], n, sub.inputs[0]
    return None


def _split_sum(g, name):
    """name = chunk_a + chunk_b: [(gates, start, stop), (gates, start, stop)] or None."""
    for a, b in _pairs(g, name, "Add")[:1]:
        ca, cb = _chunk(g, a), _chunk(g, b)
        if ca is not None and cb is not None:
            return [ca, cb]
    return None


def _match_gru(g: _Graph, h_new):
    """The GRU cell (linear_before_reset, as torch's GRUCell and Keras reset_after=True) computing ``h_new``."""
    upd = _gru_update(g, h_new)
    if upd is None:
        return None
    z_pre, n, h = upd
    n_pre = _act_of(g, n, "Tanh")
    zs = _split_sum(g, z_pre)
    if n_pre is None or zs is None:
        return None
    for xn, rhn in _pairs(g, n_pre, "Add"):
        cxn = _chunk(g, xn)
        for r_sig, hn in _pairs(g, rhn, "Mul"):
            r_pre = _act_of(g, r_sig, "Sigmoid")
            chn = _chunk(g, hn)
            rs = _split_sum(g, r_pre) if r_pre is not None else None
            if cxn is None or chn is None or rs is None:
                continue
            lx, lh = _lin(g, cxn[0]), _lin(g, chn[0])
            if lx is None or lh is None or _root(g, lh[0]) != _root(g, h) or lx[0] == lh[0]:
                continue
            by = {c[0]: c for c in zs + rs}
            if set(by) != {cxn[0], chn[0]}:
                continue
            zx, zh = ([c for c in zs if c[0] == cxn[0]] + [None])[0], ([c for c in zs if c[0] == chn[0]] + [None])[0]
            rx, rh = ([c for c in rs if c[0] == cxn[0]] + [None])[0], ([c for c in rs if c[0] == chn[0]] + [None])[0]
            if None in (zx, zh, rx, rh) or zx[1:] != zh[1:] or rx[1:] != rh[1:] or cxn[1:] != chn[1:]:
                continue
            H = cxn[2] - cxn[1]
            rows = [np.arange(*c[1:]) for c in (rx, zx, cxn)]             # IR order r, z, n
            if any(len(r) != H for r in rows) or lh[1].shape != (3 * H, H):
                continue
            order = np.concatenate(rows)
            return {"x": lx[0], "h": h, "H": H, "W": lx[1][order], "R": lh[1][order], "bx": lx[2][order],
                    "bh": lh[2][order]}
    return None


def rewrite_unrolled_cells(trace) -> int:
    """Replace every unrolled LSTM / GRU cell of the residual graph by a one-step node; returns how many."""
    g = _Graph(trace)
    found = 0
    for node in list(trace.residual):
        if node.op_type not in ("Mul", "Add") or not node.outputs[0]:
            continue
        if node.op_type == "Mul":
            cell = _match_lstm(g, node.outputs[0])
            if cell is None:
                continue
            _replace(trace, cell, node.outputs[0], found)
        else:
            cell = _match_gru(g, node.outputs[0])
            if cell is None:
                continue
            _replace_gru(trace, cell, node.outputs[0], found)
        found += 1
        g = _Graph(trace)
    if found:
        _prune_and_sort(trace)
    return found


def _replace(trace, cell, h_new, k):
    H = cell["H"]
    p = f"__lstm_cell{k}_"
    x_shape = trace.vals[cell["x"]].shape
    if len(x_shape) != 2 or len(trace.vals[cell["h"]].shape) != 2 or len(trace.vals[cell["c"]].shape) != 2:
        return
    # IR order i, f, g, o -> ONNX order i, o, f, c
    to_onnx = np.concatenate([np.arange(0, H), np.arange(3 * H, 4 * H), np.arange(H, 2 * H), np.arange(2 * H, 3 * H)])
    W = cell["W"][to_onnx][None].astype(np.float32)
    R = cell["R"][to_onnx][None].astype(np.float32)
    B = np.concatenate([cell["b"][to_onnx], np.zeros(4 * H)])[None].astype(np.float32)
    I = W.shape[2]
    consts = {p + "W": W, p + "R": R, p + "B": B, p + "sx": np.array([1, -1, I], np.int64),
              p + "sh": np.array([1, -1, H], np.int64), p + "so": np.array([-1, H], np.int64)}
    for n, v in consts.items():
        trace.vals[n] = Const([v] * trace.W)
    nodes = [_Synth("Reshape", [cell["x"], p + "sx"], [p + "X"]),
             _Synth("Reshape", [cell["h"], p + "sh"], [p + "h0"]),
             _Synth("Reshape", [cell["c"], p + "sh"], [p + "c0"]),
             _Synth("LSTM", [p + "X", p + "W", p + "R", p + "B", "", p + "h0", p + "c0"], ["", p + "Yh", p + "Yc"],
                    {"hidden_size": H}, name=f"unrolled LSTM cell {k}"),
             _Synth("Reshape", [p + "Yh", p + "so"], [h_new]),
             _Synth("Reshape", [p + "Yc", p + "so"], [cell["c_new"]])]
    _splice(trace, nodes, {h_new, cell["c_new"]})


def _replace_gru(trace, cell, h_new, k):
    H = cell["H"]
    p = f"__gru_cell{k}_"
    if len(trace.vals[cell["x"]].shape) != 2 or len(trace.vals[cell["h"]].shape) != 2:
        return
    to_onnx = np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])   # r,z,n -> z,r,h
    W = cell["W"][to_onnx][None].astype(np.float32)
    consts = {p + "W": W, p + "R": cell["R"][to_onnx][None].astype(np.float32),
              p + "B": np.concatenate([cell["bx"][to_onnx], cell["bh"][to_onnx]])[None].astype(np.float32),
              p + "sx": np.array([1, -1, W.shape[2]], np.int64), p + "sh": np.array([1, -1, H], np.int64),
              p + "so": np.array([-1, H], np.int64)}
    for n, v in consts.items():
        trace.vals[n] = Const([v] * trace.W)
    nodes = [_Synth("Reshape", [cell["x"], p + "sx"], [p + "X"]),
             _Synth("Reshape", [cell["h"], p + "sh"], [p + "h0"]),
             _Synth("GRU", [p + "X", p + "W", p + "R", p + "B", "", p + "h0"], ["", p + "Yh"],
                    {"hidden_size": H, "linear_before_reset": 1}, name=f"unrolled GRU cell {k}"),
             _Synth("Reshape", [p + "Yh", p + "so"], [h_new])]
    _splice(trace, nodes, {h_new})


def _splice(trace, nodes, replaced):
    trace.residual = [n for n in trace.residual if not (set(n.outputs) & replaced)]
    for n in nodes:
        vals = [trace.vals[i] if i else None for i in n.inputs]
        outs = trace._dyn(n, vals, n.op_type)
        for o, v in zip(n.outputs, outs):
            if o:
                trace.vals[o] = v
        trace.residual.append(n)


def _prune_and_sort(trace):
    """Drop residual nodes the outputs no longer need; order the rest topologically."""
    prod = {o: n for n in trace.residual for o in n.outputs if o}
    need, todo = set(), list(trace.outputs)
    while todo:
        v = todo.pop()
        if v in need:
            continue
        need.add(v)
        if v in prod:
            todo.extend(i for i in prod[v].inputs if i)
    live = [n for n in trace.residual if any(o in need for o in n.outputs)]
    done, order, pending = set(n for n in trace.vals if n not in prod), [], list(live)
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in done for i in n.inputs):
                order.append(n)
                done.update(o for o in n.outputs if o)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("cycle in the rewritten graph")
        pending = rest
    trace.residual = order
