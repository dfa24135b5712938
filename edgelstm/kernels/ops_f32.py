"""TFLite builtin float32 ops and the float32 op-graph layer step (layer kind "ops", see edgelstm/ir/opgraph.py).

The float twin of ops_int8.py, over the float program's arrays (float32 weight blob, state, seq and arena).
Op records (OPK_REC int32 each; act: TFLite fused activation 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6):
  FC        [OPK_FC, x, K, w_off (blob, N x K), N, b_off (blob, -1 none), act, 0, 0, 0, 0, 0, o]
  ADD/SUB/MUL [op, n, a, b, o, act]
  LOGISTIC / TANH [op, n, a, 0, o]
  CLAMP     [OPK_CLAMP, n, a, 0, o, act]          (RELU, RELU6, RELU_N1_TO_1 as ops)
  COPY      [OPK_COPY, n, a, 0, o]
"""
import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from ..program.layout import (OG_NOPS, OG_OPS, OPK_ADD, OPK_CLAMP, OPK_COPY, OPK_FC, OPK_LOGISTIC, OPK_MUL, OPK_REC, OPK_SUB,
                     OPK_TANH)
from .ops_int8 import graph_io_in, graph_io_out


@njit(**NJIT_OPTS)
def _act(v, act):
    if act == 1:
        return max(v, np.float32(0.0))
    if act == 2:
        return min(max(v, np.float32(-1.0)), np.float32(1.0))
    if act == 3:
        return min(max(v, np.float32(0.0)), np.float32(6.0))
    return v


@njit(**NJIT_OPTS)
def _run_ops_f32(prog, wf, arena, first, n_ops):
    for i in range(n_ops):
        r = first + i * OPK_REC
        op = prog[r]
        if op == OPK_FC:
            x, K, w_off, N, b_off, act, o = prog[r + 1], prog[r + 2], prog[r + 3], prog[r + 4], prog[r + 5], \
                prog[r + 6], prog[r + 12]
            for n in range(N):
                acc = np.float32(0.0)
                row = w_off + n * K
                for k in range(K):
                    acc = np.float32(acc + arena[x + k] * wf[row + k])
                if b_off >= 0:
                    acc = np.float32(acc + wf[b_off + n])
                arena[o + n] = _act(acc, act)
        elif op == OPK_ADD or op == OPK_SUB or op == OPK_MUL:
            n, a, b, o, act = prog[r + 1], prog[r + 2], prog[r + 3], prog[r + 4], prog[r + 5]
            for k in range(n):
                if op == OPK_ADD:
                    v = np.float32(arena[a + k] + arena[b + k])
                elif op == OPK_SUB:
                    v = np.float32(arena[a + k] - arena[b + k])
                else:
                    v = np.float32(arena[a + k] * arena[b + k])
                arena[o + k] = _act(v, act)
        elif op == OPK_LOGISTIC or op == OPK_TANH:
            n, a, o = prog[r + 1], prog[r + 2], prog[r + 4]
            for k in range(n):
                v = np.float64(arena[a + k])
                arena[o + k] = np.float32(1.0 / (1.0 + np.exp(-v))) if op == OPK_LOGISTIC else np.float32(np.tanh(v))
        elif op == OPK_CLAMP:
            n, a, o, act = prog[r + 1], prog[r + 2], prog[r + 4], prog[r + 5]
            for k in range(n):
                arena[o + k] = _act(arena[a + k], act)
        elif op == OPK_COPY:
            a, o = prog[r + 2], prog[r + 4]
            for k in range(prog[r + 1]):
                arena[o + k] = arena[a + k]


@njit(**NJIT_OPTS)
def graph_step_f32(prog, rec, wf, seq, xo, state, s_off, oo, arena):
    """One step of a float32 op-graph layer: output to seq[oo:], new state copied back."""
    graph_io_in(prog, rec, wf, seq, xo, state, s_off, arena)
    _run_ops_f32(prog, wf, arena, prog[rec + OG_OPS], prog[rec + OG_NOPS])
    graph_io_out(prog, rec, wf, seq, oo, state, s_off, arena)
