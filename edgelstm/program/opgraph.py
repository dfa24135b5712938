"""prepare() of the op-graph layer kind: an OpGraph (edgelstm/ir/opgraph.py) laid out as op records, arena offsets
and constants in the program (all float math here, once, as LiteRT's Prepare does it)."""
from __future__ import annotations

import functools

import numpy as np

from ..ir.opgraph import BINARY, OpGraph
from ..quant import ops_prepare as P
from ..quant.multiplier import fc_multipliers
from ..quant.tables import SIGMOID_TABLE_U16
from . import layout as C


def _arena_offsets(g: OpGraph) -> tuple[list[int], int]:
    """Arena offsets of the graph's tensors by lifetime (prepare_record's layout), and the arena size.

    Time runs -1 (step start: graph_io_in copies the constants, x and the state inputs in), 0 .. n_ops - 1 (the
    ops, in order), n_ops (step end: graph_io_out reads y and the state outputs). A tensor is live over the
    closed interval [first time it is written (-1 for the copied-in tensors), last time it is read or written]
    and for the whole rest of the step if y or a state output reads it at the end; constants, x and the state
    inputs are live the whole step. Two tensors share arena elements only if their intervals are disjoint, so an
    op's output never overlaps its inputs (both are live at the op) nor any tensor still to be read. Each tensor
    is one whole block, including those ops write in element ranges (COPY parts of a concatenation): the block
    is live from the first partial write on. A tensor read before anything writes it (not possible in a
    converter graph) is live from the step start. Placement: greedy first fit (each tensor at the lowest
    offset clear of every placed tensor whose interval meets its own) in three orders, longest lifetime first,
    largest first (TFLite's arena planner), largest lifetime x size first; the smallest arena wins (the first
    of equals: deterministic). On edgelstm's GRU / RNN cell graphs it reaches the peak of live elements."""
    T, n_ops = g.tensors, len(g.ops)
    first_w, last = {}, {}
    read_early = set()
    for k, (_, a, b, out, *_rest) in enumerate(g.ops):
        for t in (a, b):
            if t >= 0:
                if t not in first_w:
                    read_early.add(t)
                last[t] = k
        first_w.setdefault(out, k)
        last[out] = k
    whole = {g.x} | {si for si, _ in g.state} | {i for i, t in enumerate(T) if t[3] is not None}
    at_end = {g.y} | {so for _, so in g.state}
    span = []
    for i in range(len(T)):
        if i in whole or i in read_early or i not in first_w:
            lo = -1
        else:
            lo = first_w[i]
        hi = n_ops if i in whole or i in at_end else last.get(i, lo)
        span.append((lo, hi))

    size = np.array([t[0] for t in T], np.int64)
    los, his = np.array([s[0] for s in span], np.int64), np.array([s[1] for s in span], np.int64)

    def first_fit(order):
        offs = np.zeros(len(T), np.int64)
        for p, i in enumerate(order):
            done = order[:p]
            meet = done[(los[done] <= his[i]) & (los[i] <= his[done])]
            at = 0
            for j in meet[np.argsort(offs[meet], kind="stable")]:
                if at + size[i] <= offs[j]:
                    break
                at = max(at, int(offs[j] + size[j]))
            offs[i] = at
        return int((offs + size).max()), [int(v) for v in offs]

    length = [hi - lo + 1 for lo, hi in span]
    keys = (lambda i: (-length[i], -T[i][0], i), lambda i: (-T[i][0], span[i][0], i),
            lambda i: (-length[i] * T[i][0], i))
    best = min((first_fit(np.array(sorted(range(len(T)), key=key), np.int64)) for key in keys),
               key=lambda r: r[0])
    return best[1], best[0]


def prepare_record(b, g: OpGraph, params: dict, state_off: int) -> tuple[list[int], int]:
    """Lay out one op-graph layer for the program: op records and constants into ``b`` (program.builder.Builder),
    all float math done here (LiteRT's Prepare). Returns (direction record, arena elements)."""

    T = g.tensors
    offs, arena = _arena_offsets(g)      # by tensor lifetime: tensors that are never live together share elements
    q = g.quantized
    recs = []
    act16_table = None
    for name, a, bi, out, act, p0, p1, p2 in g.ops:
        r = [0] * C.OPK_REC
        (na, sa, za), (no, so, zo, _, bits) = T[a][:3], T[out]
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            w = params["w"][p0:p0 + no * na].reshape(no, na)
            if q:
                bias = b.add_ints(params["b"][p1:p1 + no]) if p1 >= 0 else -1
                lo, hi = P.activation_range(act, so, zo, bits=bits)
                if name == "FULLY_CONNECTED":
                    code, mults = C.OPK_FC, fc_multipliers(params["w_scale"][p2:p2 + no], sa, so)
                else:
                    code, mults = C.OPK_CONV16, P.conv16_multipliers(params["w_scale"][p2:p2 + no], sa, so)
                if name == "FULLY_CONNECTED":
                    w_off = b.add_weights(w)
                else:   # a dot-loop matrix (columns padded; the C copy holds it as int8 rows): the pairwise
                    # block layout when its rows make whole blocks and K <= 512 keeps the int32 sums exact
                    fast = C.uses_blocks(no) and na <= 512
                    w_off = b.add_weights(w, pad_columns=True, unit=no if fast else 1)
                    r[13] = int(fast)
                r[:13] = [code, offs[a], na, za, w_off, no, bias, b.add_ints(mults), 0, zo, lo, hi, offs[out]]
            else:
                bias = b.add_weights(params["b"][p1:p1 + no]) if p1 >= 0 else -1
                r[:13] = [C.OPK_FC, offs[a], na, b.add_weights(w), no, bias, act, 0, 0, 0, 0, 0, offs[out]]
        elif name in BINARY:
            code = {"ADD": C.OPK_ADD, "SUB": C.OPK_SUB, "MUL": C.OPK_MUL}[name]
            if not q:
                r[:6] = [code, no, offs[a], offs[bi], offs[out], act]
            else:
                sb, zb = T[bi][1], T[bi][2]
                lo, hi = P.activation_range(act, so, zo, bits=bits)
                if name == "MUL":
                    m, s = P.prepare_mul(s_a=sa, s_b=sb, s_out=so)
                    r[:12] = [code, no, offs[a], offs[bi], offs[out], za, zb, m, s, zo, lo, hi]
                else:
                    p = P.prepare_add(s_a=sa, s_b=sb, s_out=so, bits=bits)
                    r[:17] = [code, no, offs[a], offs[bi], offs[out], za, p["mult_a"], p["shift_a"], zb,
                              p["mult_b"], p["shift_b"], p["left_shift"], p["mult_out"], p["shift_out"], zo, lo, hi]
        else:
            n, src, dst = p2 or no, offs[a] + p0, offs[out] + p1
            if name == "COPY":
                r[:5] = [C.OPK_COPY, n, src, 0, dst]
            elif not q:
                code = {"LOGISTIC": C.OPK_LOGISTIC, "TANH": C.OPK_TANH, "RELU": C.OPK_CLAMP}[name]
                r[:6] = [code, n, src, 0, dst, 1 if name == "RELU" else 0]
            elif name in ("QUANTIZE", "RELU"):
                m, s = (P.prepare_relu if name == "RELU" else P.prepare_requantize)(s_in=sa, s_out=so)
                lo, hi = P.activation_range(1 if name == "RELU" else 0, so, zo, bits=bits)
                r[:11] = [C.OPK_REQUANT, n, src, 0, dst, za, m, s, zo, lo, hi]
            elif bits == 16:                  # int16 LOGISTIC / TANH: LiteRT's reference interpolation
                if act16_table is None:
                    act16_table = b.add_ints(SIGMOID_TABLE_U16)
                tanh = name == "TANH"
                mult, shift = P.prepare_act16(sa, tanh=tanh)
                table = b.kernel_table(("act16", tanh, mult, shift),     # built later: bind the values now
                                       functools.partial(P.act16_table, mult, shift, tanh=tanh))
                # [9]: the JIT's exhaustive table of this op (its kernel-blob offset, patched by Builder.finish);
                # [8]: the 256-entry interpolation table the C runtime uses
                r[:10] = [C.OPK_ACT16, n, src, 0, dst, int(tanh), mult, shift, act16_table, table]
            else:
                if name == "REQUANTIZE_FLOAT":
                    table = P.float_requantize_table(s_in=sa, zp_in=za, s_out=so, zp_out=zo)
                else:
                    table = P.lookup_table(name.lower(), s_in=sa, zp_in=za, s_out=so, zp_out=zo)
                r[:6] = [C.OPK_LUT, n, src, 0, dst, b.add_weights(table)]
        recs.append(r)
    states = []
    for si, so_ in g.state:
        size, s_in, z_in = T[si][:3]
        s_out, z_out = T[so_][1:3]
        lut = -1
        if q and (s_in, z_in) != (s_out, z_out):
            lut = b.add_weights(P.float_requantize_table(s_in=s_out, zp_in=z_out, s_out=s_in, zp_out=z_in))
        states.append([offs[si], offs[so_], size, 0, lut])
    rel = 0
    for st in states:                     # state i sits at state_off + sum of the sizes before it
        st[3] = rel
        rel += st[2]
    consts = [[offs[i], t[0], b.add_weights(params["c"][t[3]:t[3] + t[0]])] for i, t in enumerate(T)
              if t[3] is not None]
    rec = [0] * C.OG_LEN
    rec[C.OG_NOPS] = len(recs)
    rec[C.OG_OPS] = b.add_ints(np.asarray(recs, np.int64).ravel()) if recs else 0
    for i, r in enumerate(recs):
        if q and r[0] == C.OPK_ACT16:
            b.refer_kernel_table(rec[C.OG_OPS] + i * C.OPK_REC + 9, r[9])
    rec[C.OG_X], rec[C.OG_NX], rec[C.OG_Y], rec[C.OG_NY] = offs[g.x], T[g.x][0], offs[g.y], T[g.y][0]
    rec[C.OG_NSTATE] = len(states)
    rec[C.OG_STATES] = b.add_ints(np.asarray(states, np.int64).ravel()) if states else 0
    rec[C.OG_STATE] = state_off
    rec[C.OG_NCONST] = len(consts)
    rec[C.OG_CONSTS] = b.add_ints(np.asarray(consts, np.int64).ravel()) if consts else 0
    return rec, arena
