"""prepare() once, then run()/stream(): the user-facing runtime.

``prepare`` turns a validated model into the three constant arrays a kernel needs (``prog`` int32 records,
``weights`` int16 for int8 models / float32 for float models, and layout sizes).  ALL float math of the
int8 path (effective scales, QuantizeMultiplier, zero-point folding, activation tables) happens here, the
way TFLite's Prepare does it; the kernels in ``edgelstm.kernels`` are integer-only.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from .cellgraph import rnn_h_scale
from .errors import InputError, ModelError, StreamingError
from .limits import FC_SHIFT_RANGE, MAX_ELEMENTS, MBQM_SHIFT_RANGE, MULTIPLIER_RANGE
from .model import ModelSpec
from .quant.params import QuantParams, validate_quant

_ALIGN = 64
_F32 = np.dtype(np.float32)
# Output quantization fixed by an int8 output activation (TFLite's conventions for LOGISTIC / SOFTMAX / TANH).
FIXED_OUTPUT_QUANT = {"sigmoid": (1.0 / 256.0, -128), "softmax": (1.0 / 256.0, -128), "tanh": (1.0 / 128.0, 0)}


def _align(n: int, a: int = _ALIGN) -> int:
    return (n + a - 1) // a * a


def _f32_bits(v: float) -> int:
    return int(np.array([v], dtype=np.float32).view(np.int32)[0])


def _wrap32(a: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's-complement wrap (C semantics of TFLite's int32 accumulations)."""
    return ((np.asarray(a, dtype=np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def fold_zero_point(bias: np.ndarray | None, weights: np.ndarray, zero_point: int) -> np.ndarray:
    """TFLite PrecomputeZeroPointTimesWeightWithBias: bias - zp * rowsum(weights), int32."""
    rows = weights.shape[0]
    b = np.zeros(rows, np.int64) if bias is None else bias.astype(np.int64)
    return _wrap32(b - int(zero_point) * weights.astype(np.int64).sum(axis=1))


class _Builder:
    """Appends records to prog and arrays to the weight blob, returning their offsets."""

    def __init__(self, weight_dtype, n_layers: int):
        self.prog: list[int] = [0] * (16 + n_layers)  # global header + layer table, filled at the end
        self.blob: list[np.ndarray] = []
        self.blob_len = 0
        self.dtype = np.dtype(weight_dtype)
        self.dot_matrices: list[tuple[int, int, int, int]] = []   # (offset, rows, padded cols, unit)
        # JIT-only int16 tables (the ACT16 ops' exhaustive 65,536-entry tables): appended after the blob in the
        # kernel blob only, so the C runtime's blob (flash) does not carry them
        self.kernel_tables: dict = {}          # key -> (table number, function making the (65536,) int16 table)
        self.kernel_table_refs: list[tuple[int, int]] = []    # (prog index, table number) patched by finish()

    def add_weights(self, a: np.ndarray, *, pad_columns: bool = False, unit: int | None = None) -> int:
        """Append to the weight blob; matrices feeding the int8 dot loop get zero-padded columns and are
        remembered (with ``unit``, the row count of the sub-matrices the kernels read, default all rows) so
        ``finish`` can lay them out for the pairwise kernel in the JIT's copy of the blob."""
        off = self.blob_len
        a = np.asarray(a)
        if pad_columns:
            from .kernels.layout import PAD
            a = np.pad(a, ((0, 0), (0, (-a.shape[1]) % PAD)))
            self.dot_matrices.append((off, a.shape[0], a.shape[1], a.shape[0] if unit is None else unit))
        flat = np.ascontiguousarray(a, dtype=self.dtype).ravel()
        pad = (-flat.size) % 32  # keep every matrix 64-byte aligned for the dot loops
        self.blob.append(flat)
        if pad:
            self.blob.append(np.zeros(pad, self.dtype))
        self.blob_len += flat.size + pad
        return off

    def add_ints(self, a) -> int:
        off = len(self.prog)
        self.prog.extend(int(v) for v in np.asarray(a, dtype=np.int64).ravel())
        return off

    def kernel_table(self, key, make) -> int:
        """The number of the JIT-only table ``key`` (equal keys share one); ``make()`` builds it when the kernel
        blob is made, so a model the C runtime runs never computes it."""
        if key not in self.kernel_tables:
            self.kernel_tables[key] = (len(self.kernel_tables), make)
        return self.kernel_tables[key][0]

    def refer_kernel_table(self, prog_index: int, number: int) -> None:
        """prog[prog_index] becomes table ``number``'s element offset in the kernel blob (set by finish())."""
        self.kernel_table_refs.append((prog_index, number))

    def finish(self):
        blob = np.concatenate(self.blob) if self.blob else np.zeros(1, self.dtype)
        for i, k in self.kernel_table_refs:     # the tables follow the blob (its final length is known now)
            self.prog[i] = blob.size + k * 65536
        prog = np.array(self.prog, dtype=np.int64)
        if prog.min(initial=0) < -2**31 or prog.max(initial=0) >= 2**31:
            raise ModelError("model too large for int32 offsets")
        return prog.astype(np.int32), blob

    def kernel_blob(self, blob: np.ndarray) -> np.ndarray:
        """The JIT's copy of an int16 blob: every dot-loop matrix whose sub-matrices are whole pairwise
        blocks (layout.uses_blocks, the kernels' own rule) repacked in place into the block layout, then the
        JIT-only tables.  Same offsets as ``blob``, which stays row-major for the C runtime (its format is
        unchanged)."""
        return self.kernel_blob_maker(blob)()

    def kernel_blob_maker(self, blob: np.ndarray):
        """``kernel_blob(blob)`` as a function to call later: it holds the matrix layout and the table makers,
        not the builder, and nothing is computed until it is called (the JIT-only tables tripled the
        prepare() time of the int8 GRU tagger, 3.3 -> 11 ms, which a model run by the C runtime need not pay)."""
        dtype, matrices = self.dtype, list(self.dot_matrices)
        makers = [make for _, make in sorted(self.kernel_tables.values(), key=lambda t: t[0])]

        def make():
            from .kernels.layout import pack_blocks, uses_blocks
            if dtype != np.int16:
                return blob
            out = blob.copy()
            for off, rows, cp, unit in matrices:
                if uses_blocks(unit):
                    out[off:off + rows * cp] = pack_blocks(blob[off:off + rows * cp].reshape(rows, cp))
            tables = [np.asarray(m(), np.int16) for m in makers]
            return np.concatenate([out] + tables) if tables else out
        return make


def _qm(real) -> tuple[int, int]:
    """QuantizeMultiplier of a float32 effective scale, refused when MBQM cannot apply it.  Every model (loaded,
    quantized or imported) goes through prepare() and so through this one check."""
    return _qm_exact(float(np.float32(real)))


def _qm_exact(r: float) -> tuple[int, int]:
    """QuantizeMultiplier of a double, with the shift-range check."""
    from .quant.multiplier import quantize_multiplier
    try:
        m, shift = quantize_multiplier(r)
    except ValueError as e:
        raise ModelError(f"effective scale {r!r} cannot be quantized: {e}") from None
    lo, hi = MBQM_SHIFT_RANGE
    if not MULTIPLIER_RANGE[0] <= m <= MULTIPLIER_RANGE[1] or not lo <= shift <= hi:
        raise ModelError(f"effective scale {r:.6g} needs a multiplier shift of {shift}, outside the supported "
                         f"range [{lo}, {hi}] (scale ratio must lie below 2^{hi}); the model's quantization "
                         f"scales are inconsistent")
    return m, shift


def quantized_clip(clip: float, scale: float, limit: int) -> int:
    """LiteRT's Prepare: static_cast<intN>(min(max(float32(clip) / float32(scale), -limit-1), limit)),
    a float32 division truncated toward zero; 0 (no clipping) when clip is 0 or rounds to 0."""
    if clip <= 0:
        return 0
    q = np.float32(np.float32(clip) / np.float32(scale))
    return int(min(max(q, np.float32(-limit - 1)), np.float32(limit)))


def fc_multipliers(w_scales, in_scale, out_scale) -> list[int]:
    """LiteRT's int8 FULLY_CONNECTED Prepare, per output channel: the effective scale in double,
    input_scale * filter_scale[c] / output_scale (each a float32 widened to double), QuantizeMultiplier:
    (multiplier, shift) pairs with shift <= 30 (the single-rounding form shifts right by 31 - shift)."""
    out = []
    for w in np.asarray(w_scales, np.float32):
        real = float(np.float32(in_scale)) * float(w) / float(np.float32(out_scale))
        m, shift = _qm_exact(real)
        if not FC_SHIFT_RANGE[0] <= shift <= FC_SHIFT_RANGE[1]:
            raise ModelError(f"Dense effective scale {real:.6g} needs a multiplier shift of {shift}; LiteRT's "
                             f"FULLY_CONNECTED supports shifts up to {FC_SHIFT_RANGE[1]}")
        out.extend((m, shift))
    return out


def _scale_f32(w_scale, in_scale, out_scale):
    """TFLite Prepare's float32 effective scale: w_scale * in_scale / out_scale, evaluated left to right."""
    return np.float32(np.float32(w_scale) * np.float32(in_scale)) / np.float32(out_scale)


Q3_12 = 2.0 ** -12
# kernel return codes (see kernels/program.py)
STATUS_NON_FINITE_INPUT, STATUS_NON_FINITE_OUTPUT = 1, 2
NON_FINITE_OUTPUT_MESSAGE = ("the float model produced NaN or inf (its weights or activations overflow "
                             "float32)")


class Prepared:
    """Constant arrays and layout of a prepared model (one per Model, shared by all its streams)."""

    def __init__(self, *, quantized, prog, weights, make_kernel_weights, n_state, width, scratch, layout,
                 whole_sequence):
        self.quantized = quantized
        self.prog = prog          # int32 records
        self.weights = weights    # int16 (int8 model) or float32 (float model); what the C runtime reads
        self._make_kernel_weights = make_kernel_weights   # _Builder.kernel_blob_maker: run on first JIT use
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
    """uint8 [prog copy | kernel weights at a 64-byte aligned offset, stored in the copy's slot G_KW_OFF]."""
    from .kernels.layout import G_KW_OFF
    p = prog.copy()
    off = _align(p.nbytes)
    p[G_KW_OFF] = off
    blob = np.zeros(off + kernel_weights.nbytes, np.uint8)
    blob[:p.nbytes] = p.view(np.uint8)
    blob[off:] = kernel_weights.view(np.uint8)
    return blob


def prepare(spec: ModelSpec, quant: QuantParams | None) -> Prepared:
    """Build kernel-ready arrays. float model: quant is None."""
    from .kernels import layout as C
    from .quant.tables import sigmoid_table, tanh_table

    quantized = quant is not None
    b = _Builder(np.int16 if quantized else np.float32, len(spec.layers))
    layer_offsets, layout = [], []
    n_state, scratch, width = 0, 1, spec.input_size
    sig_off, tanh_offs = -1, {}
    if quantized and any(layer.kind == "lstm" for layer in spec.layers):   # the gemmlowp tables, 128 KiB each
        sig_off = b.add_weights(sigmoid_table())
        tanh_offs = {3: b.add_weights(tanh_table(3))}
    for k, layer in enumerate(spec.layers):
        n_dir = 2 if layer.bidirectional else 1
        kind = layer.kind
        # int8 GRU / RNN directions run as their int16 cell graphs (edgelstm/cellgraph.py) on the op kernels
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
            elif kind == "ops":
                st, rel = {}, 0
                for name, (size,) in layer.state_shapes().items():
                    st[name] = (n_state + rel, size)
                    rel += size
            used = sum(size for _, size in st.values())
            state_off = n_state
            n_state += _align(used, 32)
            dir_layout.append(st)
            if kind == "ops" or lowered:       # a graph of TFLite builtin ops (edgelstm/opgraph.py)
                from .opgraph import prepare_record
                if lowered:
                    from .cellgraph import cell_graph
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
            b.add_ints(r)
        layer_offsets.append(off)
    scratch = scratch + (-scratch) % C.PAD + C.PAD  # hid8 / r*h vectors are read padded from aux
    if max(width, n_state, scratch) > MAX_ELEMENTS:   # the C runtime's limit too (limits.py)
        raise ModelError(f"model too large: frame width {width}, state {n_state}, scratch {scratch} elements; the "
                         f"limit is {MAX_ELEMENTS}")
    prog, weights = b.finish()
    prog[0:8] = [len(spec.layers), spec.input_size, spec.output_size, width, 0, 0, 0, 0]
    if quantized:
        (s_in, zp_in), (s_out, zp_out) = quant.act[0], quant.act[-1]
        prog[4:8] = [zp_in, zp_out, _f32_bits(s_in), _f32_bits(s_out)]
    prog[16:16 + len(layer_offsets)] = layer_offsets
    return Prepared(quantized=quantized, prog=prog, weights=weights,
                    make_kernel_weights=b.kernel_blob_maker(weights),
                    n_state=max(n_state, 1), width=width, scratch=scratch, layout=layout,
                    whole_sequence=spec.needs_whole_sequence)


def _int8_record(b: _Builder, layer, quant: QuantParams, k: int, d: int, state_off: int, sig_off: int,
                 tanh_offs: dict) -> list[int]:
    from .kernels import layout as C
    from .quant.tables import tanh_table

    q = quant.layers[k][d]
    s_in, zp_in = quant.act[k]
    s_out, zp_out = quant.act[k + 1]
    kind = layer.kind

    def pairs(*reals):
        out = []
        for r in reals:
            out.extend(_qm(r))
        return out

    if kind == "lstm":
        rec = [0] * C.LS_LEN
        rec[C.LS_WX] = b.add_weights(q["w_x"], pad_columns=True)
        rec[C.LS_WH] = b.add_weights(q["w_h"], pad_columns=True)
        rec[C.LS_BX] = b.add_ints(fold_zero_point(q["b"], q["w_x"], zp_in))
        rec[C.LS_BH] = b.add_ints(fold_zero_point(None, q["w_h"], zp_out))
        rec[C.LS_MX:C.LS_MX + 8] = pairs(*[_scale_f32(q["w_x_scale"][g], s_in, Q3_12) for g in range(4)])
        rec[C.LS_MH:C.LS_MH + 8] = pairs(*[_scale_f32(q["w_h_scale"][g], s_out, Q3_12) for g in range(4)])
        cell_exp = int(q["cell_exp"][0])
        if layer.peephole:
            rec[C.LS_PEEP] = b.add_weights(q["w_peep"])
            rec[C.LS_MP:C.LS_MP + 6] = pairs(
                *[_scale_f32(np.float32(2.0 ** cell_exp), q["w_peep_scale"][j], Q3_12) for j in range(3)])
        if layer.proj_size:
            s_hid, zp_hid = float(q["hidden_scale"][0]), int(q["hidden_zp"][0])
            rec[C.LS_PROJ] = b.add_weights(q["w_proj"], pad_columns=True)
            rec[C.LS_BPROJ] = b.add_ints(fold_zero_point(q["b_proj"], q["w_proj"], zp_hid))
            rec[C.LS_MPROJ:C.LS_MPROJ + 2] = pairs(_scale_f32(q["w_proj_scale"][0], s_hid, s_out))
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


def _f32_record(b: _Builder, layer, w: dict, state_off: int) -> list[int]:
    from .kernels import cells_f32 as F
    from .kernels.layout import ACTIVATIONS

    if layer.kind == "dense":
        rec = [0] * F.FD_LEN
        rec[F.FD_W] = b.add_weights(w["w"].T)
        rec[F.FD_B] = b.add_weights(w["b"])
        rec[F.FD_ACT] = ACTIVATIONS[layer.activation]
        return rec
    rec = [-1] * F.FL_LEN
    # matrices are stored transposed for the axpy-ordered float matvec (see cells_f32._matvec_f32)
    rec[F.FL_WX] = b.add_weights(w["w_x"].T)
    if layer.kind == "gru":
        H = layer.hidden_size
        rec[F.FL_WH] = b.add_weights(np.concatenate([w["w_h"][:2 * H].T.ravel(), w["w_h"][2 * H:].T.ravel()]))
        rec[F.FL_B] = b.add_weights(w["b_x"])
        rec[F.FL_B2] = b.add_weights(w["b_h"])
    else:
        rec[F.FL_WH] = b.add_weights(w["w_h"].T)
        rec[F.FL_B] = b.add_weights(w["b"])
    if layer.kind == "lstm" and layer.peephole:
        rec[F.FL_PEEP] = b.add_weights(w["w_peep"])
    if layer.kind == "lstm" and layer.proj_size:
        rec[F.FL_PROJ] = b.add_weights(w["w_proj"].T)
        rec[F.FL_BPROJ] = b.add_weights(w["b_proj"])
    if layer.kind == "lstm":
        rec[F.FL_CELL_CLIP] = _f32_bits(layer.cell_clip)
        rec[F.FL_PROJ_CLIP] = _f32_bits(layer.proj_clip)
    rec[F.FL_STATE] = state_off
    return rec


# ---------------------------------------------------------------- work buffers and state

WORK_LIMIT_BYTES = 2**31 - 2**20


# Frames per chunk: run/step_many work through T in chunks whose two ping-pong sequence buffers together take
# at most CHUNK_BYTES, so working memory does not grow with T (bit-identical: the state carries across chunks).
CHUNK_BYTES = 256 * 1024


def chunk_frames(prep: Prepared, batch: int, frames: int) -> int:
    """Frames per chunk for ``batch`` sequences of ``frames`` frames (all of them for a backward direction)."""
    if prep.whole_sequence:
        return frames
    return max(1, min(frames, CHUNK_BYTES // (2 * prep.elem * batch * prep.width)))


def _make_work(prep: Prepared, batch: int, frames: int) -> np.ndarray:
    """uint8 work buffer with its int32 header (see kernels/program.py), for ``batch`` sequences and chunks
    of ``frames`` frames."""
    from .kernels.layout import IXW, PAD, WORK_HEADER_BYTES
    e = prep.elem
    off = WORK_HEADER_BYTES
    lengths_off = off
    off = _align(off + 4 * batch)
    ix_off = off
    off = _align(off + 4 * IXW * batch)
    state_off = off
    off = _align(off + e * (prep.n_state * batch + PAD))  # PAD slack: dot loops read padded vectors
    seq_n = batch * frames * prep.width + PAD
    seq_off = off
    off = _align(off + 2 * e * seq_n)
    scr = prep.scratch * batch              # per sequence: gates, acc, aux of one cell call
    gates_off = off
    off = _align(off + 4 * scr)
    acc_off = off
    off = _align(off + 4 * scr)
    aux_off = off
    off = _align(off + 4 * scr)
    y_off = off
    off = _align(off + 4 * batch * prep.out_size)
    if off >= WORK_LIMIT_BYTES:  # the kernels address the work buffer with int32 offsets
        raise InputError(f"this call needs a {off / 2**20:.0f} MiB work buffer ({batch} sequence(s) x {frames} "
                         f"frames), over the {WORK_LIMIT_BYTES // 2**20} MiB limit of one call: split the "
                         f"batch or the sequence into smaller calls (a stream keeps its state between them)")
    work = np.zeros(off, dtype=np.uint8)
    work[:52].view(np.int32)[:] = [lengths_off, state_off, prep.n_state, seq_off, seq_n, gates_off, acc_off,
                                   aux_off, prep.scratch, ix_off, frames, batch, y_off]
    return work


def _work_views(prep: Prepared, work: np.ndarray, batch: int):
    hdr = work[:36].view(np.int32)
    lengths = work[hdr[0]:hdr[0] + 4 * batch].view(np.int32)
    dt = np.int16 if prep.quantized else np.float32
    state = work[hdr[1]:hdr[1] + prep.elem * prep.n_state * batch].view(dt).reshape(batch, prep.n_state)
    return lengths, state


def _describe(v) -> str:
    """Short description of a user value for error messages."""
    if isinstance(v, np.ndarray):
        return f"an array of shape {v.shape} and dtype {v.dtype}"
    text = repr(v)
    return f"{type(v).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _as_array(v, what: str, expect: str = "numbers") -> np.ndarray:
    """np.asarray that turns ragged nested lists and non-numeric objects into an InputError."""
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as e:
        raise InputError(f"{what}: expected {expect}, got a ragged or mixed sequence ({e})") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise InputError(f"{what}: expected {expect}, got {_describe(v)}")
    return a


class State(list):
    """Recurrent state: ``state[k][d]`` is a dict of arrays for layer k, direction d ({} for Dense).

    Float models hold float32 ``h`` (and ``c`` for LSTM).  int8 models hold the exact integers:
    LSTM ``h`` int8 (output quantization) and ``c`` int16 (scale 2**cell_exp); GRU ``h`` int16 Q0.15;
    RNN ``h`` int8.  Arrays carry a leading batch axis when the state belongs to a batched run."""

    def copy(self) -> "State":
        return State([[{n: a.copy() for n, a in dd.items()} for dd in layer] for layer in self])


class Model:
    """A runnable model: float32 (``quant is None``) or int8."""

    def __init__(self, spec: ModelSpec, quant: QuantParams | None = None, *, initial_state: State | None = None):
        if not isinstance(spec, ModelSpec):
            raise ModelError("Model needs an edgelstm.ModelSpec")
        if quant is None and not spec.has_weights:
            raise ModelError("a model without float weights needs quantized parameters")
        self.spec = spec
        self.audio = None  # edgelstm.audio.AudioConfig of an audio tagger (set by load / the training recipe)
        self.quant = validate_quant(spec, quant) if quant is not None else None
        self._prep = prepare(spec, self.quant)
        self._initial = None      # float State (unbatched) or None: zeros
        self._initial_native = None
        if initial_state is not None:
            self.initial_state = initial_state

    @property
    def initial_state(self) -> State | None:
        """The model's own start state in real (float) terms, e.g. ONNX ``initial_h``/``initial_c``
        initializers; ``run`` (without ``initial_state=``), ``stream`` and ``reset`` start from it.  None (the
        default) means zeros.  Set it with a ``zero_state()``-structured unbatched float state, or None."""
        return None if self._initial is None else self._initial.copy()

    @initial_state.setter
    def initial_state(self, st: State | None) -> None:
        if st is None:
            self._initial = self._initial_native = None
            return
        if not isinstance(st, (list, tuple)) or any(not isinstance(layer, (list, tuple)) for layer in st) or any(
                not isinstance(dd, dict) for layer in st for dd in layer):
            raise InputError(f"initial_state must be a State (per layer, per direction, a dict of arrays), got "
                             f"{_describe(st)}")
        as_float = State([[{n: _as_array(a, f"initial_state[{k}][{d}][{n!r}]").astype(np.float32)
                            for n, a in dd.items()} for d, dd in enumerate(layer)] for k, layer in enumerate(st)])
        for k, d, name, _, shape, _ in self._state_fields():
            a = as_float[k][d].get(name) if k < len(as_float) and d < len(as_float[k]) else None
            if a is None or a.shape != shape or not np.all(np.isfinite(a)):
                raise InputError(f"initial_state[{k}][{d}][{name!r}]: expected {shape} finite floats, got "
                                 f"{_describe(a)}")
        native = self.state_from_float(as_float)
        self._write_state(_make_work(self._prep, 1, 1), 1, native, batched=False)  # validates the structure
        self._initial, self._initial_native = as_float, native

    # -------------------------------------------------------------- descriptions
    @property
    def is_quantized(self) -> bool:
        return self.quant is not None

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def output_size(self) -> int:
        return self.spec.output_size

    def describe(self) -> dict:
        n_params = sum(layer.n_w + layer.n_b if layer.kind == "ops" else
                       sum(int(np.prod(s)) for s in layer.param_shapes().values()) * (2 if layer.bidirectional else 1)
                       for layer in self.spec.layers)
        return {"dtype": "int8" if self.is_quantized else "float32", "input_size": self.input_size,
                "output_size": self.output_size, "parameters": n_params, "layers": self.spec.describe(),
                "act_quant": self.quant.to_plain() if self.quant else None}

    def __repr__(self) -> str:
        kinds = "-".join(d["kind"] for d in self.spec.describe())
        return f"<edgelstm.Model {'int8' if self.is_quantized else 'float32'} {kinds} " \
               f"{self.input_size}->{self.output_size}>"

    # -------------------------------------------------------------- state helpers
    def zero_state(self, *, batch: int | None = None) -> State:
        """The state that means 'all zeros' in real terms (int8 h equals its zero point)."""
        n = batch or 1
        work = _make_work(self._prep, n, 1)
        self._reset_state(work, n, zero=True)
        return self._read_state(work, n, batched=batch is not None)

    def _state_fields(self):
        """(k, d, name, dtype, shape-without-batch, layout offset) for every state array."""
        out = []
        for k, layer in enumerate(self.spec.layers):
            for d, st in enumerate(self._prep.layout[k]):
                for name, (off, size) in st.items():
                    out.append((k, d, name, self._state_dtype(layer, name), (size,), off))
        return out

    def _state_dtype(self, layer, name):
        if not self.is_quantized:
            return np.dtype(np.float32)
        if layer.kind == "lstm":
            return np.dtype(np.int8 if name == "h" else np.int16)
        if layer.kind == "ops":          # each state tensor's own width (int16 in edgelstm's 16x8 graphs)
            return np.dtype(np.int16 if layer.state_bits(list(layer.state_shapes()).index(name)) == 16 else np.int8)
        return np.dtype(np.int16)          # GRU / RNN: the int16 state of their cell graphs

    def _reset_state(self, work, batch, *, zero: bool = False):
        """Write the model's initial state (zeros unless ``initial_state`` is set; ``zero=True``: zeros)."""
        if self._initial_native is not None and not zero:
            tiled = State([[{n: np.repeat(a[None], batch, axis=0) for n, a in dd.items()} for dd in layer]
                           for layer in self._initial_native])
            self._write_state(work, batch, tiled, batched=True)
            return
        _, state = _work_views(self._prep, work, batch)
        state[:] = 0
        if self.is_quantized:
            for k, layer in enumerate(self.spec.layers):
                zp = self.quant.act[k + 1][1]
                for st in self._prep.layout[k]:
                    if layer.kind == "ops":     # each state tensor at its own zero point (real 0)
                        for i, (off, size) in enumerate(st.values()):
                            state[:, off:off + size] = layer.state_quant(i)[1]
                    elif layer.kind == "lstm":
                        off, size = st["h"]
                        state[:, off:off + size] = zp

    def _read_state(self, work, batch, *, batched: bool) -> State:
        _, state = _work_views(self._prep, work, batch)
        out = State([[{} for _ in self._prep.layout[k]] for k in range(len(self.spec.layers))])
        for k, d, name, dt, shape, off in self._state_fields():
            a = state[:, off:off + shape[0]].astype(dt)
            out[k][d][name] = a if batched else a[0].copy()
        return out

    def _write_state(self, work, batch, st: State, *, batched: bool) -> None:
        """Validate a user state (structure, dtype, shape) completely, then write it into the work buffer:
        on any error nothing has been written."""
        n_layers = len(self.spec.layers)
        if not isinstance(st, (list, tuple)) or len(st) != n_layers:
            raise InputError(f"state must be a list with one entry per layer ({n_layers}), got "
                             f"{_describe(st)}")
        for k in range(n_layers):
            n_dir = len(self._prep.layout[k])
            if not isinstance(st[k], (list, tuple)) or len(st[k]) != n_dir:
                raise InputError(f"state[{k}]: expected a list of {n_dir} direction dict(s), got {_describe(st[k])}")
        staged = []
        for k, d, name, dt, shape, off in self._state_fields():
            entry = st[k][d]
            if not isinstance(entry, dict):
                raise InputError(f"state[{k}][{d}] must be a dict of arrays, got {_describe(entry)}")
            if name not in entry:
                raise InputError(f"state[{k}][{d}] lacks {name!r}")
            a = _as_array(entry[name], f"state[{k}][{d}][{name!r}]")
            want = (batch,) + shape if batched else shape
            if a.shape != want:
                raise InputError(f"state[{k}][{d}][{name!r}]: shape {a.shape}, expected {want}")
            if a.dtype != dt:
                raise InputError(f"state[{k}][{d}][{name!r}]: dtype {a.dtype}, expected {dt}")
            if dt.kind == "f" and not np.all(np.isfinite(a)):
                raise InputError(f"state[{k}][{d}][{name!r}] contains NaN or inf")
            staged.append((off, shape[0], a.reshape(batch, shape[0])))
        _, state = _work_views(self._prep, work, batch)
        for off, n, a in staged:
            state[:, off:off + n] = a

    def state_to_float(self, st: State) -> State:
        """Dequantize a state (identity copy for float models)."""
        if not self.is_quantized:
            return st.copy()
        out = st.copy()
        for k, layer in enumerate(self.spec.layers):
            if layer.kind == "dense":
                continue
            if layer.kind == "ops":
                for i, name in enumerate(layer.state_shapes()):
                    s, zp = layer.state_quant(i)
                    out[k][0][name] = ((out[k][0][name].astype(np.float32) - zp) * np.float32(s)).astype(np.float32)
                continue
            s_out, zp = self.quant.act[k + 1]
            for d, entry in enumerate(out[k]):
                if layer.kind in ("gru", "rnn"):
                    s_h = np.float32(rnn_h_scale(layer, self.quant.layers[k][d]))
                    entry["h"] = (entry["h"].astype(np.float32) * s_h).astype(np.float32)
                else:
                    entry["h"] = ((entry["h"].astype(np.float32) - zp) * np.float32(s_out)).astype(np.float32)
                if layer.kind == "lstm":
                    e = int(self.quant.layers[k][d]["cell_exp"][0])
                    entry["c"] = (entry["c"].astype(np.float32) * np.float32(2.0 ** e)).astype(np.float32)
        return out

    def state_from_float(self, st: State) -> State:
        """Quantize a float state into this model's native state (identity copy for float models)."""
        if not self.is_quantized:
            return State([[{n: np.asarray(a, np.float32).copy() for n, a in dd.items()} for dd in layer]
                          for layer in st])
        out = State([[{} for _ in self._prep.layout[k]] for k in range(len(self.spec.layers))])
        for k, layer in enumerate(self.spec.layers):
            if layer.kind == "dense":
                continue
            if layer.kind == "ops":
                for i, name in enumerate(layer.state_shapes()):
                    s, zp = layer.state_quant(i)
                    v = np.asarray(st[k][0][name], dtype=np.float64)
                    dt = self._state_dtype(layer, name)
                    info = np.iinfo(dt)
                    out[k][0][name] = np.clip(np.round(v / s) + zp, info.min, info.max).astype(dt)
                continue
            s_out, zp = self.quant.act[k + 1]
            for d in range(len(self._prep.layout[k])):
                src = st[k][d]
                h = np.asarray(src["h"], dtype=np.float64)
                if layer.kind in ("gru", "rnn"):
                    s_h = float(np.float32(rnn_h_scale(layer, self.quant.layers[k][d])))
                    out[k][d]["h"] = np.clip(np.round(h / s_h), -32768, 32767).astype(np.int16)
                else:
                    out[k][d]["h"] = np.clip(np.round(h / s_out) + zp, -128, 127).astype(np.int8)
                if layer.kind == "lstm":
                    e = int(self.quant.layers[k][d]["cell_exp"][0])
                    c = np.asarray(src["c"], dtype=np.float64)
                    out[k][d]["c"] = np.clip(np.round(c / 2.0 ** e), -32768, 32767).astype(np.int16)
        return out

    # -------------------------------------------------------------- running
    def _check_frames(self, X, what: str, *, expect: str = "", scan: bool = True) -> np.ndarray:
        """Float frames with the model's feature count, as a C-contiguous, writable float32 array (a
        read-only or differently typed input is copied: it would otherwise compile a new kernel variant).
        ``scan=False``: a float32 input is not scanned for NaN/inf here (the kernel does, before touching any
        state, without a (T, F) temporary), so working memory stays bounded for any T."""
        expect = expect or f"(..., {self.input_size}) float frames"
        if X is None or isinstance(X, (str, bytes, dict)):
            raise InputError(f"{what}: expected {expect}, got {_describe(X)}")
        X = _as_array(X, what, expect)
        if X.dtype.kind != "f":
            raise InputError(f"{what}: expected {expect}, got dtype {X.dtype} (convert integer frames to float "
                             f"yourself: their scale is yours to choose)")
        if X.shape[-1:] != (self.input_size,):
            raise InputError(f"{what}: expected {expect} ({self.input_size} features in the last axis), got "
                             f"shape {X.shape}")
        if X.size == 0:
            raise InputError(f"{what}: empty sequence (shape {X.shape})")
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: reported below
            X32 = np.ascontiguousarray(X, dtype=np.float32)
        if (scan or X.dtype != _F32) and not np.all(np.isfinite(X32)):
            bad = "overflows float32" if np.all(np.isfinite(X)) else "contains NaN or inf"
            raise InputError(f"{what} {bad}")
        if not X32.flags.writeable:
            X32 = X32.copy()
        return X32

    def run(self, X, *, lengths=None, initial_state: State | None = None, return_state: bool = False):
        """Run whole sequences. X: (T, F) or (B, T, F) float. lengths: (B,) valid steps per sequence
        (outputs past a sequence's length are 0; its final state is the state at its own length).
        Returns Y (same leading axes, output_size features), or (Y, State) with return_state=True."""
        expect = f"(T, {self.input_size}) or (B, T, {self.input_size}) float frames"
        X = self._check_frames(X, "X", expect=expect, scan=False)
        if X.ndim not in (2, 3):
            raise InputError(f"X: expected {expect}, got shape {X.shape}")
        batched = X.ndim == 3
        X3 = X if batched else X[None]
        B, T = X3.shape[0], X3.shape[1]
        if lengths is None:
            lens = np.full(B, T, dtype=np.int32)
        else:
            if not batched:
                raise InputError("lengths= needs batched input (B, T, F)")
            lens = _as_array(lengths, "lengths")
            if lens.shape != (B,) or lens.dtype.kind not in "iu":
                raise InputError(f"lengths must be {B} integers, got {lens.dtype} {lens.shape}")
            if np.any(lens < 1) or np.any(lens > T):
                raise InputError(f"lengths must lie in [1, {T}], got min {lens.min()} max {lens.max()}")
            lens = lens.astype(np.int32)
        work = _make_work(self._prep, B, chunk_frames(self._prep, B, T))
        lens_view, _ = _work_views(self._prep, work, B)
        lens_view[:] = lens
        if initial_state is None:
            self._reset_state(work, B)
        else:
            self._write_state(work, B, initial_state, batched=batched)
        Y = np.empty((B, T, self.output_size), dtype=np.float32)
        status = self._kernel()(X3, Y, self._prep.kernel_blob, work)
        if status == STATUS_NON_FINITE_OUTPUT:
            raise ModelError(NON_FINITE_OUTPUT_MESSAGE)
        if status:
            raise InputError("X contains NaN or inf")
        Y = Y if batched else Y[0]
        if return_state:
            return Y, self._read_state(work, B, batched=batched)
        return Y

    def _kernel(self, *, frame: bool = False):
        from .kernels import announce_compile, program
        if frame:
            kernel = program.step_int8 if self.is_quantized else program.step_f32
        else:
            kernel = program.forward_int8 if self.is_quantized else program.forward_f32
        announce_compile(kernel)
        return kernel

    def stream(self) -> "Stream":
        """A new streaming session (batch 1, state kept between calls). Many may exist at once."""
        self._check_streamable()
        return Stream(self)

    def streams(self, n: int) -> "Streams":
        """``n`` independent streaming sessions stepped together: ``step(X)`` takes X (n, F) and returns
        (n, O); each row is bit-identical to its own ``stream()``, and the matmuls read the weights once per
        step for all n (the way to serve many microphones or cameras from one thread)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"streams(n): n must be a positive integer, got {_describe(n)}")
        self._check_streamable()
        return Streams(self, int(n))

    def _check_streamable(self) -> None:
        if self.spec.needs_whole_sequence:
            raise StreamingError("a bidirectional or reverse model needs the whole sequence: use run(), not "
                                 "stream()")


def _compiled_entry(kernel, args):
    """The compiled entry point of Numba dispatcher ``kernel`` for the types of ``args`` (called directly it
    unboxes the arguments as those types, without checking them); ``kernel`` itself when it is not a Numba
    dispatcher (the C runtime's NativeStep) or has no such overload."""
    overloads = getattr(kernel, "overloads", None)
    if not overloads:
        return kernel
    from numba import typeof
    cres = overloads.get(tuple(typeof(a) for a in args))
    return getattr(cres, "entry_point", None) or kernel


class _StreamBase:
    """What Stream and Streams share: a work buffer for ``batch`` sequences, the one-caller guard, state."""

    _batched = False

    def __init__(self, model: Model, batch: int, step_kernel):
        self.model = model
        prep = model._prep
        self._batch = batch
        self._step_kernel = step_kernel
        self._F = model.input_size
        # One caller at a time: the kernels run without the GIL on this stream's buffers, so a second thread
        # must not enter. A non-blocking acquire costs ~0.07 us and turns misuse into a clear error.
        self._busy = threading.Lock()
        self._acquire = self._busy.acquire      # bound once: the step fast path pays no attribute lookups
        self._release = self._busy.release
        self._alloc(1)
        self.reset()

    @property
    def _step_kernel(self):
        """The step kernel (the Numba dispatcher, or the C runtime's NativeStep); settable to switch backend."""
        return self._kernel_fn

    @_step_kernel.setter
    def _step_kernel(self, kernel) -> None:
        self._kernel_fn = kernel
        self._call = self._first_call        # the fast path's callable, resolved again on the next call
        # the JIT's model blob (made on first use); the C runtime's NativeStep reads its own arrays instead
        self._model_blob = self.model._prep.kernel_blob if getattr(kernel, "reads_kernel_blob", True) else None

    def _first_call(self, x, blob, work):
        """The first fast-path call goes through the kernel (compiling or loading it); later ones call its
        compiled entry point for exactly these argument types, skipping Numba's type dispatch (~0.2 us of a
        2.5 us step). The fast path only ever passes arguments of those types (float32 C-contiguous aligned
        writable x of the stream's shape, the stream's own blob and work buffer)."""
        status = self._kernel_fn(x, blob, work)
        self._call = _compiled_entry(self._kernel_fn, (x, blob, work))
        return status

    def _enter(self) -> None:
        if not self._acquire(False):
            self._refuse()

    @staticmethod
    def _refuse():
        raise StreamingError("this Stream is in use by another thread: a Stream serves one caller at a "
                             "time; give each thread its own model.stream()")

    def _alloc(self, frames: int) -> None:
        """(Re)make the work buffer for chunks of ``frames`` frames, keeping the state."""
        model = self.model
        prep = model._prep
        old = getattr(self, "_work", None)
        work = _make_work(prep, self._batch, frames)
        if old is not None:
            _, s_new = _work_views(prep, work, self._batch)
            _, s_old = _work_views(prep, old, self._batch)
            s_new[:] = s_old
        lens, _ = _work_views(prep, work, self._batch)
        self._lengths = lens
        self._work = work
        self._frames = frames
        y_off = int(work[:64].view(np.int32)[12])
        self._y = work[y_off:y_off + 4 * self._batch * model.output_size].view(np.float32).reshape(
            (self._batch, model.output_size))       # the step output buffer, written by the kernel
        self._out = self._y if self._batched else self._y[0]

    def step(self, x) -> np.ndarray:
        """One frame per stream in ((F,) for a Stream, (n, F) for Streams, float), the outputs out ((O,) or
        (n, O)): a reused buffer, overwritten by the next call."""
        # fast path: one identity test on the dtype, a cached shape tuple and ``carray`` (C-contiguous, aligned
        # and writable: a read-only array would compile a new kernel variant) (~0.1 us); else validate
        if type(x) is np.ndarray and x.dtype is _F32 and x.shape == self._in_shape and x.flags.carray:
            call = self._call
        else:
            x = self._check_step_input(x)
            call = self._kernel_fn                  # through Numba's dispatch: any other array type is safe
        if not self._acquire(False):
            self._refuse()
        try:
            status = call(x, self._model_blob, self._work)
            if status:
                self._raise_status(status, "x")
        finally:
            self._release()
        return self._out

    def _check_step_input(self, x) -> np.ndarray:
        expect = (f"one frame per stream, shape {self._in_shape}, float" if self._batched else
                  f"one frame of shape {self._in_shape}, float")
        x = self.model._check_frames(x, "x", expect=expect)
        if x.shape != self._in_shape:
            raise InputError(f"x: expected {expect}, got shape {x.shape}")
        return x

    def reset(self) -> None:
        """Back to the model's initial state (zeros unless ``model.initial_state`` is set)."""
        self._enter()
        try:
            self.model._reset_state(self._work, self._batch)
        finally:
            self._release()

    @property
    def state(self) -> State:
        """A copy of the current state (exact integers for int8 models)."""
        self._enter()
        try:
            return self.model._read_state(self._work, self._batch, batched=self._batched)
        finally:
            self._release()

    @state.setter
    def state(self, st: State) -> None:
        self._enter()
        try:
            self.model._write_state(self._work, self._batch, st, batched=self._batched)
        finally:
            self._release()

    def _raise_status(self, status: int, what: str) -> None:
        if status == STATUS_NON_FINITE_INPUT:
            raise InputError(f"{what} contains NaN or inf")
        # float32 overflow inside the model (e.g. huge weights): the state is no longer meaningful
        self.model._reset_state(self._work, self._batch)
        raise ModelError(NON_FINITE_OUTPUT_MESSAGE + "; the stream was reset to the model's initial state")


class Stream(_StreamBase):
    """Step-by-step inference with explicit state. ``step(x)``: one frame (F,) float32 in, one frame (O,)
    out; it allocates nothing: it returns a view of the stream's own output buffer, overwritten by the next
    call (copy it to keep it)."""

    def __init__(self, model: Model):
        # no-JIT hook: the C runtime when its library is built (edgelstm/native.py), else the Numba kernel
        from .native import step_kernel
        self._in_shape = (model.input_size,)
        super().__init__(model, 1, step_kernel(model._prep) or model._kernel(frame=True))

    def step_many(self, X) -> np.ndarray:
        """Many frames (T, F) in one jitted call; returns (T, O) (a new array). Equals T calls of step.
        Works through T in bounded chunks: the working memory does not grow with T."""
        expect = f"(T, {self._F}) float frames"
        X = self.model._check_frames(X, "X", expect=expect, scan=False)
        if X.ndim != 2:
            raise InputError(f"step_many: expected {expect}, got shape {X.shape}")
        T = X.shape[0]
        self._enter()
        try:
            want = chunk_frames(self.model._prep, 1, T)
            if want > self._frames:
                self._alloc(want)  # keeps the state
            self._lengths[0] = T
            Y = np.empty((1, T, self.model.output_size), np.float32)
            status = self.model._kernel()(X[None], Y, self.model._prep.kernel_blob, self._work)
            if status:
                self._raise_status(status, "X")
        finally:
            self._release()
        return Y[0]


class Streams(_StreamBase):
    """``n`` streams stepped by one call (``model.streams(n)``): ``step(X)`` with X (n, F) returns (n, O), a
    reused buffer; ``state`` / ``reset`` as for a Stream, with a leading n axis on every state array.  Row i
    is bit-identical to a lone ``stream()`` fed row i of every X."""

    _batched = True

    def __init__(self, model: Model, n: int):
        self._in_shape = (n, model.input_size)
        super().__init__(model, n, model._kernel(frame=True))

    def __len__(self) -> int:
        return self._batch
