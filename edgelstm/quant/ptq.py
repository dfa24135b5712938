"""Post-training quantization math: observe a float model (its own float64 forward, not the runtime) on
calibration data, choose int8 parameters, and the fidelity report's type.  ``quantize()`` and ``fidelity()``,
which run Models, live one level up in ``edgelstm.quantization``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._progress import Progress
from ..errors import ModelError
from ..ir.model import ModelSpec
from .cell_scales import GRU_SCALES, H_SCALE, RNN_SCALES
from ..ir.frontend import FRONT_END_FIELDS
from .params import CELL_EXP_RANGE, FIXED_OUTPUT_QUANT, SCALE_RANGE, QuantParams

# Headroom over the calibrated |c| before choosing the cell state's power-of-two scale: the cell is an
# integrator, so streams longer than the calibration clips reach further.
CELL_HEADROOM = 2.0
# Headroom of the int16 GRU / RNN intermediates over their calibrated |max| (int16 keeps 14 bits after it).
GRAPH_HEADROOM = 2.0


def int16_scale(absmax: float, *, off_pot: bool = False) -> float:
    """Symmetric int16 scale for a calibrated |max| (with headroom). ``off_pot`` moves a scale within 0.2% of a
    power of two up by 0.3%: LiteRT's optimized int16 LOGISTIC / TANH take another algorithm for (nearly, by
    its CheckedLog2) power-of-two input scales than its reference kernel, which edgelstm and every resolver
    share otherwise."""
    s = float(np.float32(max(absmax, 1e-6) * GRAPH_HEADROOM / 32767.0))
    if off_pot and abs(math.log2(s) - round(math.log2(s))) < 2e-3:
        s = float(np.float32(s * 1.003))
    return s


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


class _Observer:
    """Running min / max of one tensor."""

    def __init__(self):
        self.lo, self.hi = math.inf, -math.inf

    def update(self, a):
        if a.size:
            self.lo = min(self.lo, float(a.min()))
            self.hi = max(self.hi, float(a.max()))

    @property
    def absmax(self):
        return max(abs(self.lo), abs(self.hi), 0.0) if self.hi >= self.lo else 0.0


def observe(spec: ModelSpec, X: np.ndarray, progress: Progress, initial=None):
    """Float64 numpy forward of the whole stack over X (B, T, F), from the float state ``initial`` (a model's
    ``initial_state``; None: zeros), recording the ranges that quantization needs. Returns per-layer dicts of
    observers."""
    obs = [{"out": _Observer()} for _ in spec.layers]
    inp = _Observer()
    inp.update(X)
    h_seq = X.astype(np.float64)
    B, T, _ = X.shape
    for k, layer in enumerate(spec.layers):
        o = obs[k]
        if layer.kind in FRONT_END_FIELDS:
            h_seq = _front_end_forward(layer, h_seq, o, None if initial is None else initial[k][0])
            o["out"].update(h_seq)
            progress.advance(T)
            continue
        if layer.kind == "dense":
            w = layer.directions[0]
            pre = h_seq @ w["w"].T.astype(np.float64) + w["b"]
            o["pre"] = _Observer()
            o["pre"].update(pre)
            act = layer.activation
            if act == "sigmoid":
                h_seq = _sigmoid(pre)
            elif act == "tanh":
                h_seq = np.tanh(pre)
            elif act == "relu":
                h_seq = np.maximum(pre, 0)
            elif act == "softmax":
                e = np.exp(pre - pre.max(axis=-1, keepdims=True))
                h_seq = e / e.sum(axis=-1, keepdims=True)
            else:
                h_seq = pre
            o["out"].update(h_seq)
            progress.advance(T)
            continue
        outs = []
        for d, w in enumerate(layer.directions):
            w = {n: a.astype(np.float64) for n, a in w.items()}
            H = layer.hidden_size
            od = {"cell": _Observer(), "hidden": _Observer(), "pre": _Observer()}
            od["graph"] = {name: _Observer() for name in {"gru": GRU_SCALES, "rnn": RNN_SCALES}.get(layer.kind, ())}
            o.setdefault("dirs", []).append(od)
            R = layer.recurrent_size
            h = np.zeros((B, R))
            c = np.zeros((B, H))
            if initial is not None:  # the model's own start state: part of what the int8 state must hold
                h = h + np.asarray(initial[k][d]["h"], np.float64)
                o["out"].update(h)
                if layer.kind == "lstm":
                    c = c + np.asarray(initial[k][d]["c"], np.float64)
                    od["cell"].update(c)
            ys = np.zeros((B, T, R))
            backward = d == 1 or layer.reverse  # a bidirectional layer's second direction, or a reverse layer
            steps = range(T - 1, -1, -1) if backward else range(T)
            for t in steps:
                x = h_seq[:, t]
                if layer.kind == "lstm":
                    g = x @ w["w_x"].T + h @ w["w_h"].T + w["b"]
                    gi, gf, gg, go = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
                    if layer.peephole:
                        gi = gi + w["w_peep"][0] * c
                        gf = gf + w["w_peep"][1] * c
                    c = _sigmoid(gf) * c + _sigmoid(gi) * np.tanh(gg)
                    if layer.peephole:
                        go = go + w["w_peep"][2] * c
                    hid = _sigmoid(go) * np.tanh(c)
                    od["cell"].update(c)
                    od["hidden"].update(hid)
                    h = hid @ w["w_proj"].T + w["b_proj"] if layer.proj_size else hid
                elif layer.kind == "gru":       # the ranges of the int16 cell graph's intermediates
                    seen = od["graph"]
                    gx = x @ w["w_x"].T + w["b_x"]
                    fh = h @ w["w_h"][:2 * H].T + w["b_h"][:2 * H]
                    for j, g in enumerate("rzn"):
                        seen[f"fx_{g}"].update(gx[:, j * H:(j + 1) * H])
                    for j, g in enumerate("rz"):
                        seen[f"fh_{g}"].update(fh[:, j * H:(j + 1) * H])
                        seen[f"pre_{g}"].update(gx[:, j * H:(j + 1) * H] + fh[:, j * H:(j + 1) * H])
                    r = _sigmoid(gx[:, :H] + fh[:, :H])
                    z = _sigmoid(gx[:, H:2 * H] + fh[:, H:])
                    fh_n = (h if layer.reset_after else r * h) @ w["w_h"][2 * H:].T + w["b_h"][2 * H:]
                    seen["fh_n"].update(fh_n)
                    hn = r * fh_n if layer.reset_after else fh_n
                    seen["r_fh_n"].update(hn)
                    seen["pre_n"].update(gx[:, 2 * H:] + hn)
                    n = np.tanh(gx[:, 2 * H:] + hn)
                    h = (1 - z) * n + z * h
                else:
                    seen = od["graph"]
                    fx, fh = x @ w["w_x"].T + w["b"], h @ w["w_h"].T
                    seen["fx"].update(fx)
                    seen["fh"].update(fh)
                    seen["pre"].update(fx + fh)
                    h = np.maximum(fx + fh, 0) if layer.nonlinearity == "relu" else np.tanh(fx + fh)
                ys[:, t] = h
            outs.append(ys)
            progress.advance(T)
        h_seq = np.concatenate(outs, axis=-1)
        o["out"].update(h_seq)
    return inp, obs


def _front_end_forward(layer, h_seq: np.ndarray, o: dict, initial) -> np.ndarray:
    """Float64 forward of one front-end layer over (B, T, F) frames; a conv with a fused sigmoid / tanh records its
    pre-activation range in o["pre"]."""
    B, T, _ = h_seq.shape
    if layer.kind == "context":
        K, F = layer.context, layer.size
        start = np.zeros((B, K)) if initial is None else np.broadcast_to(np.asarray(initial["ctx"], np.float64), (B, K))
        stream = np.concatenate([start, h_seq.reshape(B, T * F)], axis=1)
        idx = np.arange(T)[:, None] * F + np.arange(K + F)[None, :]
        return stream[:, idx]
    if layer.kind == "activation":
        return _activate(h_seq, layer.activation)
    if layer.kind == "magnitude":
        v = h_seq.reshape(B, T, layer.length, 2, layer.channels)
        return np.sqrt(v[..., 0, :] ** 2 + v[..., 1, :] ** 2).reshape(B, T, -1)
    if layer.kind == "pad":
        return _pad_frames(h_seq.reshape(B, T, layer.length, layer.channels), layer.left, layer.right,
                           layer.mode).reshape(B, T, -1)
    w = layer.directions[0]
    x = _pad_frames(h_seq.reshape(B, T, layer.length, layer.in_channels), layer.pad_left, layer.pad_right,
                    layer.pad_mode)
    pos = np.arange(layer.out_length)[:, None] * layer.stride + np.arange(layer.kernel_size)[None, :] * layer.dilation
    win = x[:, :, pos]                                  # (B, T, Lo, K, C)
    W = w["w"].astype(np.float64)
    if layer.depthwise:
        mult = layer.out_channels // layer.in_channels
        pre = np.einsum("btlko,ok->btlo", np.repeat(win, mult, axis=-1), W[:, :, 0])
    else:
        pre = np.einsum("btlkc,okc->btlo", win, W)
    pre = pre + w["b"]
    o["pre"] = o.get("pre") or _Observer()
    o["pre"].update(pre)
    return _activate(pre, layer.activation).reshape(B, T, -1)


def _pad_frames(x: np.ndarray, left: int, right: int, mode: str) -> np.ndarray:
    """(..., L, C) padded along L with zeros or a reflection (edge not repeated)."""
    width = [(0, 0)] * (x.ndim - 2) + [(left, right), (0, 0)]
    return np.pad(x, width, mode="reflect" if mode == "reflect" else "constant")


def _activate(v: np.ndarray, act: str) -> np.ndarray:
    if act == "relu":
        return np.maximum(v, 0)
    if act == "relu6":
        return np.clip(v, 0, 6)
    if act == "sigmoid":
        return _sigmoid(v)
    if act == "tanh":
        return np.tanh(v)
    return v


def choose_act_quant(lo: float, hi: float, *, what: str = "activation") -> tuple[float, int]:
    """Asymmetric int8 (TFLite ChooseQuantizationParams): the range always contains 0."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or (hi - lo) / 255.0 > SCALE_RANGE[1]:
        raise ModelError(f"{what}: calibrated range [{lo:g}, {hi:g}] cannot be quantized to int8 "
                         "(the float model diverges on the calibration data)")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        return 1.0 / 256.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def _round_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_symmetric(w: np.ndarray, *, bits: int = 8) -> tuple[np.ndarray, np.float32]:
    """Per-tensor symmetric, narrow range ([-127, 127] for int8)."""
    qmax = 2 ** (bits - 1) - 1
    m = float(np.abs(w).max()) if w.size else 0.0
    scale = np.float32(m / qmax if m > 0 else 1.0)
    q = np.clip(_round_away(w.astype(np.float64) / float(scale)), -qmax, qmax)
    return q.astype(np.int8 if bits == 8 else np.int16), scale


def quantize_bias(b: np.ndarray, scale: float) -> np.ndarray:
    q = _round_away(b.astype(np.float64) / float(scale))
    return np.clip(q, -2**31, 2**31 - 1).astype(np.int32)


def _blocks(w, n_blocks):
    rows = w.shape[0] // n_blocks
    qs, scales = zip(*[quantize_symmetric(w[g * rows:(g + 1) * rows]) for g in range(n_blocks)])
    return np.concatenate(qs), np.array(scales, dtype=np.float32)


def _bias_blocks(b, s_in, w_scales):
    rows = b.shape[0] // len(w_scales)
    return np.concatenate([quantize_bias(b[g * rows:(g + 1) * rows], np.float32(s_in) * w_scales[g])
                           for g in range(len(w_scales))])


def _cell_graph_params(layer, w: dict, seen: dict, s_in: float) -> dict:
    """One direction of an int8 GRU / RNN (edgelstm/program/cellgraph.py): int8 weights per output row, int32 biases
    at s_input * w_scale[row] (x biases kept small enough for the input zero point to fold into int32),
    int16 intermediate scales from the calibrated ranges."""
    q = {}
    rows = w["w_x"].shape[0]
    for name in ("w_x", "w_h"):
        q[name], ws = _blocks(w[name], rows)
        zero = ~np.any(q[name] != 0, axis=1)     # an all-zero row: any scale works; keep its multiplier tame
        ws[zero] = ws[~zero].min() if np.any(~zero) else np.float32(1e-3)
        q[f"{name}_scale"] = ws
    fold_room = 2**31 - 1 - 128 * 127 * w["w_x"].shape[1]
    names = GRU_SCALES if layer.kind == "gru" else RNN_SCALES
    H = layer.hidden_size
    if layer.kind == "gru":
        q["b_x"] = np.clip(_bias_blocks(w["b_x"], s_in, q["w_x_scale"]), -fold_room, fold_room).astype(np.int32)
        q["b_h"] = _bias_blocks(w["b_h"], H_SCALE, q["w_h_scale"])
        act_in = {"pre_r", "pre_z", "pre_n"}
    else:
        q["b"] = np.clip(_bias_blocks(w["b"], s_in, q["w_x_scale"]), -fold_room, fold_room).astype(np.int32)
        act_in = {"pre"} if layer.nonlinearity == "tanh" else set()
    sc = [int16_scale(seen[n].absmax, off_pot=n in act_in) for n in names]
    # a conv's multiplier s_input * w_scale / s_output must stay below 2^7 (LiteRT's 16x8 conv shift limit);
    # calibrated ones lie near or below 1: raise an output scale that would put it above 8 (a range too small
    # for its inputs, e.g. a near-constant calibration input), leaving room for rescaled files
    s_h = sc[2] if layer.kind == "rnn" and layer.nonlinearity == "relu" else H_SCALE
    convs = [(j, s_in, q["w_x_scale"][j * H:(j + 1) * H]) for j in range(3 if layer.kind == "gru" else 1)]
    convs += [(3 + j if layer.kind == "gru" else 1, s_h, q["w_h_scale"][j * H:(j + 1) * H])
              for j in range(3 if layer.kind == "gru" else 1)]
    for j, s_x, ws in convs:
        sc[j] = max(sc[j], float(np.float32(s_x * float(ws.max()) / 8.0)))
    q["graph_scale"] = np.array(sc, np.float32)
    return q


def _conv_params(layer, w: dict, o: dict, s_in: float) -> dict:
    """int8 conv: weights symmetric per output channel (CONV_2D / DEPTHWISE_CONV_2D per-channel as the converter
    writes them), int32 bias at s_input * w_scale[c], the pre-activation quantization (used by a fused sigmoid /
    tanh)."""
    O = layer.out_channels
    q = {}
    wq, ws = _blocks(w["w"].reshape(O, -1), O)
    zero = ~np.any(wq != 0, axis=1)     # an all-zero channel: any scale works; keep its multiplier tame
    ws[zero] = ws[~zero].min() if np.any(~zero) else np.float32(1e-3)
    q["w"], q["w_scale"] = wq.reshape(w["w"].shape), ws
    q["b"] = np.concatenate([quantize_bias(w["b"][c:c + 1], np.float32(s_in) * ws[c]) for c in range(O)])
    ps, pz = choose_act_quant(o["pre"].lo, o["pre"].hi, what="conv pre-activation")
    q["pre_scale"] = np.array([ps], np.float32)
    q["pre_zp"] = np.array([pz], np.int32)
    return q


def choose_params(spec: ModelSpec, inp: _Observer, obs: list) -> QuantParams:
    act = [choose_act_quant(inp.lo, inp.hi, what="model input")]
    layers = []
    for k, layer in enumerate(spec.layers):
        o = obs[k]
        if layer.kind in ("pad", "context") or (layer.kind == "activation" and layer.activation in ("relu", "relu6")):
            out_q = act[k]                    # a copy of its input (relu: a clamp at the input's own scale)
        elif layer.kind in ("activation", "conv1d") and layer.activation in ("sigmoid", "tanh"):
            out_q = FIXED_OUTPUT_QUANT[layer.activation]
        elif layer.kind == "dense" and layer.activation in ("sigmoid", "softmax"):
            out_q = (1.0 / 256.0, -128)
        elif layer.kind == "dense" and layer.activation == "tanh":
            out_q = (1.0 / 128.0, 0)
        elif layer.kind == "dense":
            out_q = choose_act_quant(o["pre"].lo, o["pre"].hi, what=f"layer {k} logits")  # relu/none keep them
        else:
            out_q = choose_act_quant(o["out"].lo, o["out"].hi, what=f"layer {k} ({layer.kind}) output")
        s_in = act[k][0]
        dirs = []
        for d, w in enumerate(layer.directions):
            q = {}
            if layer.kind in FRONT_END_FIELDS:
                dirs.append(_conv_params(layer, w, o, s_in) if layer.kind == "conv1d" else {})
                continue
            if layer.kind == "dense":
                # per output channel (LiteRT's FULLY_CONNECTED as the converter writes it)
                q["w"], q["w_scale"] = _blocks(w["w"], w["w"].shape[0])
                q["b"] = np.concatenate([quantize_bias(w["b"][r:r + 1], np.float32(s_in) * q["w_scale"][r])
                                         for r in range(w["w"].shape[0])])
                ps, pz = choose_act_quant(o["pre"].lo, o["pre"].hi)
                q["pre_scale"] = np.array([ps], np.float32)
                q["pre_zp"] = np.array([pz], np.int32)
                dirs.append(q)
                continue
            od = o["dirs"][d]
            if layer.kind in ("gru", "rnn"):
                dirs.append(_cell_graph_params(layer, w, od["graph"], s_in))
                continue
            q["w_x"], q["w_x_scale"] = _blocks(w["w_x"], 4)
            q["w_h"], q["w_h_scale"] = _blocks(w["w_h"], 4)
            q["b"] = _bias_blocks(w["b"], s_in, q["w_x_scale"])
            if layer.kind == "lstm":
                cmax = max(od["cell"].absmax * CELL_HEADROOM, 1e-6)
                e = int(math.ceil(math.log2(cmax / 32767.0)))
                q["cell_exp"] = np.array([min(max(e, CELL_EXP_RANGE[0]), CELL_EXP_RANGE[1])], np.int32)
                if layer.peephole:
                    qs, ss = zip(*[quantize_symmetric(w["w_peep"][j], bits=16) for j in range(3)])
                    q["w_peep"] = np.stack(qs)
                    q["w_peep_scale"] = np.array(ss, np.float32)
                if layer.proj_size:
                    hs, hz = choose_act_quant(od["hidden"].lo, od["hidden"].hi)
                    q["hidden_scale"] = np.array([hs], np.float32)
                    q["hidden_zp"] = np.array([hz], np.int32)
                    q["w_proj"], ps = quantize_symmetric(w["w_proj"])
                    q["w_proj_scale"] = np.array([ps], np.float32)
                    q["b_proj"] = quantize_bias(w["b_proj"], np.float32(hs) * ps)
            dirs.append(q)
        layers.append(dirs)
        act.append(out_q)
    return QuantParams(act=act, layers=layers)


# ------------------------------------------------------------------------------------------ fidelity

@dataclass
class FidelityReport:
    """How closely the int8 model follows the float model on the same data."""
    layers: list = field(default_factory=list)   # per layer: {"kind", "max_abs_error", "cosine"}
    cosine: float = 0.0                           # of the final outputs, flattened
    max_abs_error: float = 0.0
    decision_agreement: float = 0.0               # thresholded (0.5) or argmax decisions equal
    decision_rule: str = ""
    frames: int = 0

    def to_dict(self) -> dict:
        return {"layers": self.layers, "cosine": self.cosine, "max_abs_error": self.max_abs_error,
                "decision_agreement": self.decision_agreement, "decision_rule": self.decision_rule,
                "frames": self.frames}

    def __str__(self) -> str:
        lines = [f"int8 vs float32 over {self.frames} frames",
                 f"{'layer':>5}  {'kind':<10} {'max |err|':>10} {'cosine':>9}"]
        for k, l in enumerate(self.layers):
            lines.append(f"{k:>5}  {l['kind']:<10} {l['max_abs_error']:>10.5f} {l['cosine']:>9.5f}")
        lines.append(f"output cosine {self.cosine:.5f}, max |err| {self.max_abs_error:.5f}, "
                     f"{self.decision_rule} agreement {100 * self.decision_agreement:.2f}%")
        return "\n".join(lines)


def cosine(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def decisions(Y: np.ndarray, activation: str):
    """Sigmoid-like outputs: per-output threshold 0.5; otherwise argmax over features (if >1 output) or
    sign of a single output."""
    if activation in ("sigmoid",):
        return Y >= 0.5, "threshold 0.5"
    if Y.shape[-1] > 1:
        return Y.argmax(axis=-1), "argmax"
    return Y >= 0, "sign"


def __getattr__(name):
    # ``edgelstm.quant.ptq.quantize`` / ``.fidelity`` were documented here before they moved above the runtime
    # (edgelstm.quantization); resolved on first use so this module imports nothing above it
    if name in ("quantize", "fidelity"):
        import importlib
        return getattr(importlib.import_module("edgelstm.quantization"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
