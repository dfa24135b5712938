"""The single gate-order adapter: every importer and exporter converts framework gate orders here.

A gate order is a string of gate letters, one per gate block stacked along an axis (rows by default).
Canonical orders (``edgelstm.ir.model``): LSTM ``"ifgo"``, GRU ``"rzn"``, LSTM peephole ``"ifo"``.
Frameworks name the same gates differently, so aliases are folded first: LSTM ``c`` == ``g`` (cell
candidate, ONNX/Keras), GRU ``h`` == ``n`` (new/candidate state, ONNX/Keras).
"""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError

CANONICAL = {"lstm": "ifgo", "gru": "rzn", "peephole": "ifo"}
_ALIASES = {"lstm": {"c": "g"}, "gru": {"h": "n"}, "peephole": {}}

# Framework orders.  Weight matrices are gate-stacked on the leading axis except where noted.
TORCH_LSTM = "ifgo"
TORCH_GRU = "rzn"
ONNX_LSTM = "iofc"       # W, R, B (B holds Wb then Rb, each in this order)
ONNX_GRU = "zrh"
ONNX_PEEPHOLE = "iof"    # P
KERAS_LSTM = "ifco"      # kernel (I, 4H) and recurrent_kernel (H, 4H): gates on the LAST axis (axis=-1)
KERAS_GRU = "zrh"        # same layout note as KERAS_LSTM
TFLITE_LSTM = "ifco"     # order of the per-gate tensors in the fused LSTM op's input list
TFLITE_PEEPHOLE = "ifo"  # cell_to_input, cell_to_forget, cell_to_output


def _check_kind(kind: str) -> None:
    if kind not in CANONICAL:
        raise ImportModelError(f"gate order: kind must be one of {sorted(CANONICAL)}, got {kind!r}")


def _normalize(order: str, kind: str) -> str:
    _check_kind(kind)
    aliases = _ALIASES[kind]
    norm = "".join(aliases.get(ch, ch) for ch in order.lower())
    if sorted(norm) != sorted(CANONICAL[kind]):
        raise ImportModelError(
            f"gate order {order!r} is not a permutation of the {kind} gates {CANONICAL[kind]!r}")
    return norm


def _permute(arr, *, src: str, dst: str, axis: int) -> np.ndarray:
    a = np.asarray(arr)
    n_gates = len(src)
    if a.ndim == 0 or a.shape[axis] % n_gates:
        raise ImportModelError(
            f"gate-stacked axis {axis} of shape {a.shape} is not divisible into {n_gates} gates")
    blocks = np.split(a, n_gates, axis=axis)
    by_gate = dict(zip(src, blocks))
    return np.ascontiguousarray(np.concatenate([by_gate[g] for g in dst], axis=axis))


def reorder_gates(arr, src_order: str, kind: str, *, axis: int = 0) -> np.ndarray:
    """Reorder gate blocks stacked along ``axis`` from ``src_order`` (e.g. ``ONNX_LSTM``) to the canonical
    order of ``kind`` (``"lstm"``, ``"gru"`` or ``"peephole"``)."""
    return _permute(arr, src=_normalize(src_order, kind), dst=CANONICAL[kind], axis=axis)


def from_canonical(arr, dst_order: str, kind: str, *, axis: int = 0) -> np.ndarray:
    """Inverse of ``reorder_gates``: canonical order to a framework's order (for exporters)."""
    dst = _normalize(dst_order, kind)
    return _permute(arr, src=CANONICAL[kind], dst=dst, axis=axis)


def split_gates(arr, kind: str, *, axis: int = 0) -> dict[str, np.ndarray]:
    """Canonical gate-stacked array to ``{gate letter: block}`` (for formats with one tensor per gate)."""
    _check_kind(kind)
    order = CANONICAL[kind]
    a = np.asarray(arr)
    if a.ndim == 0 or a.shape[axis] % len(order):
        raise ImportModelError(f"axis {axis} of shape {a.shape} is not divisible into {len(order)} gates")
    return {g: np.ascontiguousarray(b) for g, b in zip(order, np.split(a, len(order), axis=axis))}


def stack_gates(blocks: dict, kind: str, *, axis: int = 0) -> np.ndarray:
    """``{gate letter: block}`` (framework letters allowed, e.g. ``c`` for LSTM) to a canonical stack."""
    _check_kind(kind)
    norm = {_ALIASES[kind].get(g.lower(), g.lower()): v for g, v in blocks.items()}
    missing = set(CANONICAL[kind]) - set(norm)
    if missing or len(norm) != len(CANONICAL[kind]):
        raise ImportModelError(f"{kind} gates: need exactly {CANONICAL[kind]!r}, got {sorted(blocks)}")
    return np.ascontiguousarray(np.concatenate([np.asarray(norm[g]) for g in CANONICAL[kind]], axis=axis))


def direction_weights(kind: str, w_x, w_h, b_x, b_h, orders: dict) -> dict:
    """One direction of a recurrent layer in the IR's canonical form, from a framework's input weights, recurrent
    weights, input bias and recurrent bias, whose gates are in ``orders[kind]`` (e.g. ``{"lstm": ONNX_LSTM,
    "gru": ONNX_GRU}``).  LSTM and RNN biases are summed; a GRU keeps both (``b_hn`` sits inside ``r * (...)``)."""
    if kind == "lstm":
        return {"w_x": reorder_gates(w_x, orders["lstm"], "lstm"), "w_h": reorder_gates(w_h, orders["lstm"], "lstm"),
                "b": reorder_gates(b_x + b_h, orders["lstm"], "lstm")}
    if kind == "gru":
        return {"w_x": reorder_gates(w_x, orders["gru"], "gru"), "w_h": reorder_gates(w_h, orders["gru"], "gru"),
                "b_x": reorder_gates(b_x, orders["gru"], "gru"), "b_h": reorder_gates(b_h, orders["gru"], "gru")}
    return {"w_x": w_x, "w_h": w_h, "b": b_x + b_h}
