"""prepare(): a validated model (IR + QuantParams) -> the program the kernels run.

``prepare`` turns a model into the constant arrays a kernel needs (``prog`` int32 records, ``weights`` int16 for
int8 models / float32 for float models, and layout sizes).  ALL float math of the int8 path (effective scales,
QuantizeMultiplier, zero-point folding, activation tables) happens here, the way TFLite's Prepare does it; the
kernels in ``edgelstm.kernels`` are integer-only.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import ModelError
from ..ir.model import ModelSpec
from ..limits import MAX_ELEMENTS
from ..quant.multiplier import (fc_multipliers, fold_zero_point, quantize_multiplier_f32, quantized_clip,
                                scale_f32)
from ..quant.params import FIXED_OUTPUT_QUANT, QuantParams
from ..quant.tables import sigmoid_table, tanh_table
from . import layout as C
from .builder import Builder, align
from ..ir.frontend import FRONT_END_CLASSES as FRONT_END_KINDS
from .cellgraph import cell_graph
from .frontend import frontend_record
from .opgraph import prepare_record

Q3_12 = 2.0 ** -12


def f32_bits(v: float) -> int:
    return int(np.array([v], dtype=np.float32).view(np.int32)[0])


class Prepared:
    """Constant arrays and layout of a prepared model (one per Model, shared by all its streams)."""

    def __init__(self, *, quantized, prog, weights, make_kernel_weights, n_state, width, scratch, layout,
                 whole_sequence):
        self.quantized = quantized
        self.prog = prog          # int32 records
        self.weights = weights    # int16 (int8 model) or float32 (float model); what the C runtime reads
        self._make_kernel_weights = make_kernel_weights   # Builder.kernel_blob_maker: run on first JIT use
        self.whole_sequence = whole_sequence   # a backward direction: run() cannot split T into chunks
        self.n_state = n_state    # state elements per sequence
        self.width = width        # max feature width of any layer boundary
        self.scratch = scratch    # max gate rows
        self.layout = layout      # per layer, per direction: {"h": (offset, size), "c": ...} in elements
        self.elem = 2 if quantized else 4
        self.out_size = int(prog[2])

    @functools.cached_property
    def kernel_blob(self) -> np.ndarray:
        """The Numba kernels' model blob: prog copy + their weights (int8: pairwise block layout, then the
        JIT-only tables), one array; made on first use, so the C runtime's streams never build it."""
        return _kernel_blob(self.prog, self._make_kernel_weights())

    @property
    def kernel_weights(self) -> np.ndarray:
        """The kernel blob's weights (a view, for inspection)."""
        off = int(self.kernel_blob[:64].view(np.int32)[8])
        return self.kernel_blob[off:].view(self.weights.dtype)


def _kernel_blob(prog: np.ndarray, kernel_weights: np.ndarray) -> np.ndarray:
    """uint8 [prog copy | kernel weights at a 64-byte aligned offset, stored in the copy's slot C.G_KW_OFF]."""
    p = prog.copy()
    off = align(p.nbytes)
    p[C.G_KW_OFF] = off
    blob = np.zeros(off + kernel_weights.nbytes, np.uint8)
    blob[:p.nbytes] = p.view(np.uint8)
    blob[off:] = kernel_weights.view(np.uint8)
    return blob


def prepare(spec: ModelSpec, quant: QuantParams | None) -> Prepared:
    """Build kernel-ready arrays. float model: quant is None."""

    quantized = quant is not None
    b = Builder(np.int16 if quantized else np.float32, len(spec.layers))
    layer_offsets, layout = [], []
    n_state, scratch, width = 0, 1, spec.input_size
    sig_off, tanh_offs = -1, {}
    if quantized and any(layer.kind == "lstm" for layer in spec.layers):   # the gemmlowp tables, 128 KiB each
        sig_off = b.add_weights(sigmoid_table())
        tanh_offs = {3: b.add_weights(tanh_table(3))}
    for k, layer in enumerate(spec.layers):
        n_dir = 2 if layer.bidirectional else 1
        kind = layer.kind
        # int8 GRU / RNN directions run as their int16 cell graphs (edgelstm/program/cellgraph.py) on the op kernels
        lowered = quantized and kind in ("gru", "rnn")
        flags = C.FLAG_REVERSE if getattr(layer, "reverse", False) else 0
        if kind == "lstm":
            flags |= C.FLAG_PEEP if layer.peephole else 0
            flags |= C.FLAG_PROJ if layer.proj_size else 0
            hid, n_out = layer.hidden_size, layer.recurrent_size
        elif kind == "gru":
            flags |= C.FLAG_RESET_AFTER if layer.reset_after else 0
            hid, n_out = layer.hidden_size, layer.hidden_size
        elif kind == "rnn":
            flags |= C.FLAG_RELU if layer.nonlinearity == "relu" else 0
            hid, n_out = layer.hidden_size, layer.hidden_size
        elif kind == "ops":
            if bool(layer.quantized) != quantized:
                raise ModelError(f"layer {k} (ops): an {'int8' if layer.quantized else 'float32'} op graph in a "
                                 f"{'int8' if quantized else 'float32'} model")
            hid, n_out = 0, layer.output_size
        else:
            hid, n_out = 0, layer.output_size
        scratch = max(scratch, 4 * hid, n_out)
        width = max(width, n_out * n_dir)
        records, dir_layout = [], []
        for d in range(n_dir):
            st = {}
            if kind == "lstm":
                st = {"h": (n_state, n_out), "c": (n_state + n_out, hid)}
            elif kind in ("gru", "rnn"):
                st = {"h": (n_state, hid)}
            elif kind in ("ops", "context"):
                st, rel = {}, 0
                for name, (size,) in layer.state_shapes().items():
                    st[name] = (n_state + rel, size)
                    rel += size
            used = sum(size for _, size in st.values())
            state_off = n_state
            n_state += align(used, 32)
            dir_layout.append(st)
            if kind in FRONT_END_KINDS:         # conv and map records (program/frontend.py)
                rec, need = frontend_record(b, layer, quant, k, state_off)
                records.append(rec)
                scratch = max(scratch, need)
            elif kind == "ops" or lowered:       # a graph of TFLite builtin ops (edgelstm/ir/opgraph.py)
                if lowered:
                    graph, params = cell_graph(layer, quant.layers[k][d], quant.act[k], quant.act[k + 1])
                else:
                    graph, params = layer, quant.layers[k][d] if quantized else layer.directions[d]
                rec, arena = prepare_record(b, graph, params, state_off)
                records.append(rec)
                scratch = max(scratch, arena)
            elif quantized:
                records.append(_int8_record(b, layer, quant, k, d, state_off, sig_off, tanh_offs))
            else:
                records.append(_f32_record(b, layer, layer.directions[d], state_off))
        layout.append(dir_layout)
        dir_len = len(records[0])
        off = b.add_ints([C.KIND_OPS if lowered else C.KINDS[kind], layer.input_size, hid, n_out, n_dir, flags, 0,
                          dir_len])
        for r in records:
            r_off = b.add_ints(r)
            if kind == "magnitude" and quantized:     # field 9: the JIT's pair table (its number until finish())
                b.refer_kernel_table(r_off + C.MP_TABLE, r[C.MP_TABLE])
        layer_offsets.append(off)
    scratch = scratch + (-scratch) % C.PAD + C.PAD  # hid8 / r*h vectors are read padded from aux
    if max(width, n_state, scratch) > MAX_ELEMENTS:   # the C runtime's limit too (limits.py)
        raise ModelError(f"model too large: frame width {width}, state {n_state}, scratch {scratch} elements; the "
                         f"limit is {MAX_ELEMENTS}")
    prog, weights = b.finish()
    prog[0:8] = [len(spec.layers), spec.input_size, spec.output_size, width, 0, 0, 0, 0]
    if quantized:
        (s_in, zp_in), (s_out, zp_out) = quant.act[0], quant.act[-1]
        prog[4:8] = [zp_in, zp_out, f32_bits(s_in), f32_bits(s_out)]
    prog[16:16 + len(layer_offsets)] = layer_offsets
    return Prepared(quantized=quantized, prog=prog, weights=weights,
                    make_kernel_weights=b.kernel_blob_maker(weights),
                    n_state=max(n_state, 1), width=width, scratch=scratch, layout=layout,
                    whole_sequence=spec.needs_whole_sequence)


def _int8_record(b: Builder, layer, quant: QuantParams, k: int, d: int, state_off: int, sig_off: int,
                 tanh_offs: dict) -> list[int]:

    q = quant.layers[k][d]
    s_in, zp_in = quant.act[k]
    s_out, zp_out = quant.act[k + 1]
    kind = layer.kind

    def pairs(*reals):
        out = []
        for r in reals:
            out.extend(quantize_multiplier_f32(r))
        return out

    if kind == "lstm":
        rec = [0] * C.LS_LEN
        rec[C.LS_WX] = b.add_weights(q["w_x"], pad_columns=True)
        rec[C.LS_WH] = b.add_weights(q["w_h"], pad_columns=True)
        rec[C.LS_BX] = b.add_ints(fold_zero_point(q["b"], q["w_x"], zp_in))
        rec[C.LS_BH] = b.add_ints(fold_zero_point(None, q["w_h"], zp_out))
        rec[C.LS_MX:C.LS_MX + 8] = pairs(*[scale_f32(q["w_x_scale"][g], s_in, Q3_12) for g in range(4)])
        rec[C.LS_MH:C.LS_MH + 8] = pairs(*[scale_f32(q["w_h_scale"][g], s_out, Q3_12) for g in range(4)])
        cell_exp = int(q["cell_exp"][0])
        if layer.peephole:
            rec[C.LS_PEEP] = b.add_weights(q["w_peep"])
            rec[C.LS_MP:C.LS_MP + 6] = pairs(
                *[scale_f32(np.float32(2.0 ** cell_exp), q["w_peep_scale"][j], Q3_12) for j in range(3)])
        if layer.proj_size:
            s_hid, zp_hid = float(q["hidden_scale"][0]), int(q["hidden_zp"][0])
            rec[C.LS_PROJ] = b.add_weights(q["w_proj"], pad_columns=True)
            rec[C.LS_BPROJ] = b.add_ints(fold_zero_point(q["b_proj"], q["w_proj"], zp_hid))
            rec[C.LS_MPROJ:C.LS_MPROJ + 2] = pairs(scale_f32(q["w_proj_scale"][0], s_hid, s_out))
        else:
            s_hid, zp_hid = s_out, zp_out
        # effective_hidden_scale = 2^-15 / s_hid * 2^-15 (float32, as lstm.cc)
        eff_hidden = np.float32(np.float32(2.0 ** -15) / np.float32(s_hid)) * np.float32(2.0 ** -15)
        rec[C.LS_MHID:C.LS_MHID + 2] = pairs(eff_hidden)
        rec[C.LS_HID_ZP] = zp_hid
        rec[C.LS_OUT_ZP] = zp_out
        rec[C.LS_CELL_EXP] = cell_exp
        bits = 15 + cell_exp
        if bits not in tanh_offs:
            tanh_offs[bits] = b.add_weights(tanh_table(bits))
        rec[C.LS_TANH_CELL] = tanh_offs[bits]
        rec[C.LS_STATE] = state_off
        rec[C.LS_SIG] = sig_off
        rec[C.LS_TANH3] = tanh_offs[3]
        rec[C.LS_CELL_CLIP] = quantized_clip(layer.cell_clip, 2.0 ** cell_exp, 32767)
        rec[C.LS_PROJ_CLIP] = quantized_clip(layer.proj_clip, s_out, 127) if layer.proj_size else 0
    else:
        rec = [0] * C.DN_LEN
        s_pre, zp_pre = float(q["pre_scale"][0]), int(q["pre_zp"][0])
        act = layer.activation
        if act in FIXED_OUTPUT_QUANT:
            want = FIXED_OUTPUT_QUANT[act]
        else:
            want = (s_pre, zp_pre)
        if not (np.float32(want[0]) == np.float32(s_out) and want[1] == zp_out):
            raise ModelError(f"layer {k} (dense, {act}): output quantization {(s_out, zp_out)} must be {want}")
        rec[C.DN_W] = b.add_weights(q["w"], pad_columns=True)
        rec[C.DN_B] = b.add_ints(fold_zero_point(q["b"], q["w"], zp_in))
        # per-channel (multiplier, total right shift) pairs for LiteRT's single-rounding requantization
        rec[C.DN_M] = b.add_ints(fc_multipliers(q["w_scale"], s_in, s_pre))
        rec[C.DN_PRE_ZP] = zp_pre
        rec[C.DN_ACT] = C.ACTIVATIONS[act]
        real = s_pre * (np.arange(-128, 128) - zp_pre)
        if act == "softmax":
            # LiteRT's int8 SOFTMAX table (beta 1): expf(float32(-s_pre) * d) as float32 bits
            arg = np.float32(-np.float32(s_pre)) * np.arange(256, dtype=np.float32)
            table = np.exp(arg.astype(np.float64)).astype(np.float32)   # correctly rounded expf
            rec[C.DN_LUT] = b.add_ints(table.view(np.int32))
        elif act in ("sigmoid", "tanh"):
            f = 1.0 / (1.0 + np.exp(-real)) if act == "sigmoid" else np.tanh(real)
            lut = np.clip(np.floor(f / s_out + 0.5) + zp_out, -128, 127)
            rec[C.DN_LUT] = b.add_ints(lut)
    return rec


def _f32_record(b: Builder, layer, w: dict, state_off: int) -> list[int]:

    if layer.kind == "dense":
        rec = [0] * C.FD_LEN
        rec[C.FD_W] = b.add_weights(w["w"].T)
        rec[C.FD_B] = b.add_weights(w["b"])
        rec[C.FD_ACT] = C.ACTIVATIONS[layer.activation]
        return rec
    rec = [-1] * C.FL_LEN
    # matrices are stored transposed for the axpy-ordered float matvec (see cells_f32._matvec_f32)
    rec[C.FL_WX] = b.add_weights(w["w_x"].T)
    if layer.kind == "gru":
        H = layer.hidden_size
        rec[C.FL_WH] = b.add_weights(np.concatenate([w["w_h"][:2 * H].T.ravel(), w["w_h"][2 * H:].T.ravel()]))
        rec[C.FL_B] = b.add_weights(w["b_x"])
        rec[C.FL_B2] = b.add_weights(w["b_h"])
    else:
        rec[C.FL_WH] = b.add_weights(w["w_h"].T)
        rec[C.FL_B] = b.add_weights(w["b"])
    if layer.kind == "lstm" and layer.peephole:
        rec[C.FL_PEEP] = b.add_weights(w["w_peep"])
    if layer.kind == "lstm" and layer.proj_size:
        rec[C.FL_PROJ] = b.add_weights(w["w_proj"].T)
        rec[C.FL_BPROJ] = b.add_weights(w["b_proj"])
    if layer.kind == "lstm":
        rec[C.FL_CELL_CLIP] = f32_bits(layer.cell_clip)
        rec[C.FL_PROJ_CLIP] = f32_bits(layer.proj_clip)
    rec[C.FL_STATE] = state_off
    return rec
