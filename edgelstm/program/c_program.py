"""The C runtime's copy of a prepared int8 program: weight matrices stored compactly as int8.

``prepare()`` builds one program for the Numba kernels: int32 records ``prog`` and an int16 blob holding the
weight matrices widened to int16 with columns zero-padded to ``layout.PAD``, plus peepholes, activation tables and the
op-graph weights / tables / constants. The C runtime (firmware_host/, layout of ELSTM_FORMAT_VERSION 4) reads the same
records with the LSTM / Dense matrices and the CONV16 weights of the int16 cell graphs (int8 GRU / RNN layers)
moved to an int8 array, rows unpadded (flash = the int8 weight bytes); converter-made op graphs keep their FC
weights in the int16 blob, as the Numba kernels read them. The C
blob holds only the pieces some record names (prepare() adds the LSTM activation tables to every int8 program).
Its prog is re-serialized (``c_program``): the same header, layer and direction records with only the arrays
some record names, stored compactly (op records of their C length, CONV16 requantization two bytes a row,
the ACT16 table two entries per int32, a Dense sigmoid / tanh table as int8 in w8), so flash beyond the int8
weights is little more than the biases. ``runtime_features`` names what a bundle's runtime must compile.
``c_arrays`` derives that copy; it is the one place that knows the difference, used by the C export
(export/to_c.py), the test harness (firmware_host) and the ctypes backend (native.py) at bind time. The
shared ``Prepared`` blob and the layout constants in program/layout.py are left as they are.
Pure numpy: no Numba import.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import layout as L


def _padded(n: int, pad: int) -> int:
    return (n + pad - 1) // pad * pad


def _directions(prog: np.ndarray):
    """(layer index, layer offset, kind, direction record offset) of every layer direction of a program:
    prepare()'s or its C copy (both lay out the header, the layer headers and the direction records alike)."""
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        for d in range(int(prog[lo + L.L_NDIR])):
            yield k, lo, int(prog[lo + L.L_KIND]), lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])


def matrix_fields(prog: np.ndarray):
    """(prog index holding a matrix offset, rows, cols) of every int8 weight matrix the program uses."""
    out = []
    for _, lo, kind, rec in _directions(prog):
        n_in, H, n_out, flags = (int(prog[lo + i]) for i in (L.L_IN, L.L_HID, L.L_OUT, L.L_FLAGS))
        if kind in (L.KIND_GRU, L.KIND_RNN):
            raise ModelError("a GRU / RNN layer record in an int8 program: prepare() lowers int8 GRU / RNN layers "
                             "to op graphs; the C runtime has no such records")
        if kind == L.KIND_LSTM:
            out += [(rec + L.LS_WX, 4 * H, n_in), (rec + L.LS_WH, 4 * H, n_out)]
            if flags & L.FLAG_PROJ:
                out.append((rec + L.LS_PROJ, n_out, H))
        elif kind == L.KIND_DENSE:
            out.append((rec + L.DN_W, n_out, n_in))
        elif kind == L.KIND_OPS:        # CONV16 weights (int8 GRU / RNN cell graphs) are dot-loop matrices
            first = int(prog[rec + L.OG_OPS])
            for i in range(int(prog[rec + L.OG_NOPS])):   # prepare()'s records: OPK_REC apart
                r = first + i * L.OPK_REC
                if int(prog[r]) == L.OPK_CONV16:
                    out.append((r + 4, int(prog[r + 5]), int(prog[r + 2])))
    return out     # an op graph's FC weights stay in the int16 blob


TABLE_LEN = 65536   # one gemmlowp activation table (quant/tables.py)


def blob_fields(prog: np.ndarray):
    """(table fields, other fields): (prog index holding a blob offset, elements there) of every int16 piece
    the C runtime reads from the blob: the 65,536-entry activation tables of LSTM layers, and the rest (LSTM
    peepholes, op-graph pieces)."""
    tables, other = [], []
    for _, lo, kind, rec in _directions(prog):
        flags, H = int(prog[lo + L.L_FLAGS]), int(prog[lo + L.L_HID])
        if kind == L.KIND_LSTM:
            tables += [(rec + f, TABLE_LEN) for f in (L.LS_SIG, L.LS_TANH3, L.LS_TANH_CELL)]
            if flags & L.FLAG_PEEP:
                other.append((rec + L.LS_PEEP, 3 * H))
        elif kind == L.KIND_OPS:
            other += opgraph_blob_fields(prog, rec)
    return tables, other


def opgraph_blob_fields(prog: np.ndarray, rec: int) -> list:
    """(prog index, elements) of every blob piece an op-graph record names: FC weights (N x K),
    int8 LUT tables (256), state requantize tables (256, when present; -1: none) and constant tensors. The op
    graph keeps them in the int16 blob (the C runtime reads them there, as the Numba kernels do); the ACT16
    sigmoid table lives in prog."""
    out = []
    first, n_ops = int(prog[rec + L.OG_OPS]), int(prog[rec + L.OG_NOPS])
    for i in range(n_ops):
        r = first + i * L.OPK_REC
        op = int(prog[r])
        if op == L.OPK_FC:
            out.append((r + 4, int(prog[r + 2]) * int(prog[r + 5])))
        elif op == L.OPK_LUT:
            out.append((r + 5, 256))
    st = int(prog[rec + L.OG_STATES])
    for i in range(int(prog[rec + L.OG_NSTATE])):
        f = st + i * L.OG_STATE_REC + 4
        if int(prog[f]) >= 0:
            out.append((f, 256))
    cs = int(prog[rec + L.OG_CONSTS])
    out += [(cs + i * L.OG_CONST_REC + 2, int(prog[cs + i * L.OG_CONST_REC + 1]))
            for i in range(int(prog[rec + L.OG_NCONST]))]
    return out


def opgraph_state_zero_points(prog: np.ndarray, spec) -> np.ndarray:
    """The C program's copy gains, per op-graph layer, the zero points of its state tensors (the initial state,
    real 0, that elstm_reset writes): appended to prog, their offset in the layer header's reserved slot
    L_HDR - 2 (index 6; 0 = none, all zeros). Returns the new prog."""
    extra, prog = [], np.array(prog, dtype=np.int32, copy=True)
    n = prog.size
    for k, layer in enumerate(spec.layers):
        lo = int(prog[L.G_LAYER0 + k])
        if int(prog[lo + L.L_KIND]) != L.KIND_OPS or layer.kind != "ops":
            continue      # a GRU / RNN cell graph's state is int16 at zero point 0: the zeros elstm_reset writes
        zps = [int(layer.state_quant(i)[1]) for i in range(len(layer.state_shapes()))]
        if any(zps):                      # all zeros: the zeros elstm_reset writes anyway
            prog[lo + L_ZPS] = n + len(extra)
            extra += zps
    return np.concatenate([prog, np.asarray(extra, np.int32)]) if extra else prog


L_ZPS = 6   # the reserved layer header slot: the C copy's op-graph state zero points (see above)


def runtime_features(prog: np.ndarray) -> list[str]:
    """The ELSTM_WITH_* macros a C bundle compiles its runtime with, from the bundle's C program (c_arrays):
    the layer kinds it has (LSTM, DENSE, OPS), SOFTMAX when a Dense layer ends in softmax, and for op graphs the
    op kernels their records use (OP_FC, OP_CONV16, OP_ACT16, OP_ADD for ADD / SUB, OP_MUL, OP_REQUANT, OP_LUT;
    COPY comes with every op graph), OP_CONSTS when a graph has constant tensors and OP_STATE8 when a state
    tensor has a zero point to reset to or a requantization table (both: converter-made graphs only).
    firmware_host/src/edgelstm.c compiles only those (no macros: everything)."""
    kinds = {L.KIND_LSTM: "LSTM", L.KIND_DENSE: "DENSE", L.KIND_OPS: "OPS"}
    ops = {L.OPK_FC: "OP_FC", L.OPK_CONV16: "OP_CONV16", L.OPK_ACT16: "OP_ACT16", L.OPK_ADD: "OP_ADD",
           L.OPK_SUB: "OP_ADD", L.OPK_MUL: "OP_MUL", L.OPK_REQUANT: "OP_REQUANT", L.OPK_LUT: "OP_LUT"}
    out = set()
    for k, lo, kind, rec in _directions(prog):
        if kind not in kinds:
            raise ModelError(f"layer {k}: kind {kind} has no C runtime (int8 GRU / RNN layers are op graphs)")
        out.add(kinds[kind])
        if kind == L.KIND_DENSE and int(prog[rec + L.DN_ACT]) == L.ACT_SOFTMAX:
            out.add("SOFTMAX")
        elif kind == L.KIND_OPS:
            out.update(ops[c] for _, c in c_ops(prog, rec) if c in ops)
            if int(prog[rec + L.OG_NCONST]):
                out.add("OP_CONSTS")
            st = int(prog[rec + L.OG_STATES])
            luts = [int(prog[st + i * L.OG_STATE_REC + 4]) for i in range(int(prog[rec + L.OG_NSTATE]))]
            if int(prog[lo + L_ZPS]) or any(v >= 0 for v in luts):
                out.add("OP_STATE8")
    order = ["LSTM", "DENSE", "SOFTMAX", "OPS", "OP_FC", "OP_CONV16", "OP_ACT16", "OP_ADD", "OP_MUL", "OP_REQUANT",
             "OP_LUT", "OP_CONSTS", "OP_STATE8"]
    return [f"ELSTM_WITH_{n}" for n in order if n in out]


def c_buffers(prog: np.ndarray) -> dict:
    """Elements of the per-stream work buffers the C runtime touches for this C program (c_arrays): ``gates``
    (LSTM gate rows 4H, op-graph arenas: the furthest element any record names), ``acc`` (int32: LSTM gate and
    projection rows, Dense outputs) and ``aux`` (LSTM hidden before projection), each at least 1; ``scratch``,
    the largest of the three, is the config's scratch (the caller may size all three buffers by it, as
    edgelstm.h says; a bundle's MODEL_ACC_LEN / MODEL_AUX_LEN are the exact sizes). prepare()'s
    ``Prepared.scratch`` also covers the Numba kernels' padded reads, so it is larger."""
    gates = acc = aux = 1
    for _, lo, kind, rec in _directions(prog):
        H, n_out = int(prog[lo + L.L_HID]), int(prog[lo + L.L_OUT])
        if kind == L.KIND_LSTM:
            gates, acc, aux = max(gates, 4 * H), max(acc, 4 * H, n_out), max(aux, H)
        elif kind == L.KIND_DENSE:
            acc = max(acc, n_out)
        elif kind == L.KIND_OPS:
            ends = [int(prog[rec + L.OG_X]) + int(prog[rec + L.OG_NX]),
                    int(prog[rec + L.OG_Y]) + int(prog[rec + L.OG_NY])]
            for r, code in c_ops(prog, rec):
                if code in (L.OPK_FC, L.OPK_CONV16):
                    ends += [int(prog[r + 1]) + int(prog[r + 2]), int(prog[r + 12]) + int(prog[r + 5])]
                else:
                    n = int(prog[r + 1])
                    ends += [int(prog[r + 2]) + n, int(prog[r + 4]) + n]
                    if code in (L.OPK_ADD, L.OPK_SUB, L.OPK_MUL):
                        ends.append(int(prog[r + 3]) + n)
            st, cs = int(prog[rec + L.OG_STATES]), int(prog[rec + L.OG_CONSTS])
            for i in range(int(prog[rec + L.OG_NSTATE])):
                e = st + i * L.OG_STATE_REC
                ends += [int(prog[e]) + int(prog[e + 2]), int(prog[e + 1]) + int(prog[e + 2])]
            for i in range(int(prog[rec + L.OG_NCONST])):
                c = cs + i * L.OG_CONST_REC
                ends.append(int(prog[c]) + int(prog[c + 1]))
            gates = max(gates, *ends)
    return {"gates": gates, "acc": acc, "aux": aux, "scratch": max(gates, acc, aux)}


def c_arrays(prep, *, tables: bool = True, compact: bool = True, spec=None) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """(prog int32, w8 int8, blob int16) for the C runtime from an int8 ``Prepared``: prog's matrix fields
    point into w8 (row-major, rows of exactly ``cols`` int8), its other weight fields into a blob holding just
    the pieces those fields name (no matrices, no unused activation tables). Same values, bit for bit; only
    where they live changes. ``tables=False`` leaves the
    activation tables out too (their fields become -1: the C runtime computes gemmlowp's logistic / tanh,
    src/gemmlowp16.h), so flash holds little more than the int8 weights. ``compact=False`` (the ctypes
    backend, where the blob is already in memory) returns ``prep.weights`` itself as the blob, uncopied.
    ``spec`` (the model's ModelSpec): op-graph layers get their state zero points for elstm_reset
    (opgraph_state_zero_points; without it the C runtime resets op-graph state to zeros: the ctypes backend
    keeps the state in the runtime's own work buffer and never calls elstm_reset)."""
    return _c_arrays(prep, tables=tables, compact=compact, spec=spec)


def c_work_buffers(prep, *, tables: bool = True, spec=None) -> dict:
    """c_buffers of the C program of ``prep`` (computed here, not through c_arrays: the work buffers a bundle of
    this model allocates, whatever a caller does with the arrays c_arrays returns)."""
    return c_buffers(_c_arrays(prep, tables=tables, spec=spec)[0])


def _c_arrays(prep, *, tables: bool = True, compact: bool = True, spec=None) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """c_arrays (tests replace c_arrays to feed the C runtime tampered arrays; c_work_buffers does not)."""
    prog = np.array(prep.prog, dtype=np.int32, copy=True)
    if spec is not None:
        prog = opgraph_state_zero_points(prog, spec)
    blob = np.asarray(prep.weights)
    mats, w8_len = [], 0
    for field, rows, cols in matrix_fields(prog):
        off, cp = int(prog[field]), _padded(cols, L.PAD)
        m = blob[off:off + rows * cp].reshape(rows, cp)[:, :cols]
        if m.size and (m.min() < -128 or m.max() > 127):
            raise ModelError("a weight matrix holds values outside int8: not an int8 model")
        mats.append(m.astype(np.int8).ravel())
        prog[field] = w8_len
        w8_len += m.size
    w8 = np.concatenate(mats) if mats else np.zeros(0, np.int8)
    if not compact:
        prog, w8 = c_program(prog, w8)
        return prog, (w8 if w8.size else np.zeros(1, np.int8)), blob
    table_fields, other_fields = blob_fields(prog)
    if not tables:
        prog[[f for f, _ in table_fields]] = -1
        table_fields = []
    # the C blob: every piece some field names, once (tables are shared between layers), in blob order
    fields = table_fields + other_fields
    pieces = sorted({(int(prog[f]), n) for f, n in fields if n > 0})
    runs = []                               # merged [start, end) ranges of the kept pieces
    for off, n in pieces:
        if runs and off <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], off + n)
        else:
            runs.append([off, off + n])
    if runs and (runs[0][0] < 0 or runs[-1][1] > blob.size):
        raise ModelError("a blob field points outside the program's weights")
    starts = np.array([r[0] for r in runs], dtype=np.int64)
    new_start = np.concatenate([[0], np.cumsum([r[1] - r[0] for r in runs])])
    for f, n in fields:                     # a kept piece moves to its run's new place
        off = int(prog[f])
        if n > 0:
            i = int(np.searchsorted(starts, off, side="right")) - 1
            prog[f] = new_start[i] + off - runs[i][0]
        else:
            prog[f] = 0                     # an empty piece (a zero-size constant): nothing is read
    blob16 = np.concatenate([blob[a:b] for a, b in runs]).astype(np.int16) if runs else np.zeros(0, np.int16)
    prog, w8 = c_program(prog, w8)
    return prog, (w8 if w8.size else np.zeros(1, np.int8)), (blob16 if blob16.size else np.zeros(1, np.int16))


# ---- the C program layout (ELSTM_FORMAT_VERSION 4: records stored compactly)

# C op records hold the used prefix of the OPK_REC fields of each op code (the same field indices as
# kernels/ops_int8.py): the C runtime steps from one record to the next by this length (elstm_records.h
# OPK_LEN_*). CONV16's [13] (the JIT's block-layout flag) is not part of it.
C_OP_LEN = {"FC": 13, "CONV16": 13, "ACT16": 9, "ADD": 17, "SUB": 17, "MUL": 12, "REQUANT": 11, "LUT": 6, "COPY": 5}


def c_op_len() -> dict:
    """{op code: C record length}."""
    return {getattr(L, f"OPK_{n}"): v for n, v in C_OP_LEN.items()}


def conv16_rows(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CONV16 (multiplier, shift) pairs -> (m16, t) per row: the multiplier rounded to 16 bits exactly as the
    kernels round it (LiteRT's int64 MultiplyByQuantizedMultiplier) and the rounding shift t = 15 - shift. A
    positive scale's QuantizeMultiplier is normalized (m >= 2^30), so m16 is 0x4000..0x7FFF; t is 8..46 (shifts
    [-31, 7], prepare()'s check)."""
    m = pairs[0::2].astype(np.int64)
    m16 = np.where(m < 0x7FFF0000, (m + 32768) >> 16, 0x7FFF)
    t = 15 - pairs[1::2].astype(np.int64)
    if np.any(m16 < 0x4000) or np.any(m16 > 0x7FFF) or np.any(t < 8) or np.any(t > 46):
        raise ModelError("a CONV16 multiplier or shift outside LiteRT's 16x8 conv range")
    return m16, t


def conv16_groups(t: np.ndarray) -> list:
    """Consecutive row ranges [a, b) whose shifts lie within t0 .. t0 + 3 (t0 the range's smallest): one C
    CONV16 record each (a conv's rows are independent: the split computes the same outputs)."""
    out, a = [], 0
    while a < t.size:
        b, lo, hi = a + 1, int(t[a]), int(t[a])
        while b < t.size and max(hi, int(t[b])) - min(lo, int(t[b])) <= 3:
            lo, hi, b = min(lo, int(t[b])), max(hi, int(t[b])), b + 1
        out.append((a, b))
        a = b
    return out


def conv16_packed(m16: np.ndarray, t: np.ndarray, t0: int) -> np.ndarray:
    """The C runtime's CONV16 rows: two bytes each, (t - t0) << 14 | (m16 - 0x4000), two rows per int32 (row 2j
    in the low half, 2j + 1 in the high half); t0 is min(t) capped at 43 (the C runtime accepts t0 in 8..43, so
    any 2-bit delta gives t <= 46)."""
    if np.any(t - t0 < 0) or np.any(t - t0 > 3) or not 8 <= t0 <= 43:
        raise ModelError("CONV16 rows outside one shift window")
    e = ((t - t0) << 14) | (m16 - 0x4000)
    e = np.concatenate([e, np.zeros(e.size % 2, np.int64)])
    return (e[0::2] | (e[1::2] << 16)).astype(np.uint32).view(np.int32)


def act16_packed(table: np.ndarray) -> np.ndarray:
    """The ACT16 256-entry uint16 sigmoid table -> 128 int32, entry 2j in the low and 2j + 1 in the high half."""
    t = table.astype(np.int64)
    if t.size != 256 or np.any(t < 0) or np.any(t > 0xFFFF):
        raise ModelError("the int16 LOGISTIC / TANH table must hold 256 uint16 entries")
    return (t[0::2] | (t[1::2] << 16)).astype(np.uint32).view(np.int32)


def c_ops(prog: np.ndarray, rec: int) -> list:
    """(prog offset, op code) of every op record of the op-graph direction record at ``rec`` of a C program."""
    lens = c_op_len()
    r, out = int(prog[rec + L.OG_OPS]), []
    for _ in range(int(prog[rec + L.OG_NOPS])):
        out.append((r, int(prog[r])))
        r += lens[int(prog[r])]
    return out


def c_program(prog: np.ndarray, w8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The C runtime's prog from prepare()'s (its weight fields already moved to w8 / the C blob): the same
    header, layer and direction records, re-serialized with only the arrays some record names (each once),
    and stored compactly: op records of their C length (C_OP_LEN), CONV16 multipliers two bytes a row
    (conv16_packed, the rows' t0 in the record's unused field [8]; a conv whose shifts spread wider than four
    values becomes one C record per row range, conv16_groups, so OG_NOPS counts C records), the ACT16 table two
    entries per int32 (act16_packed), the int8 256-entry table of a Dense
    sigmoid / tanh in w8 (appended; its DN_LUT a w8 offset). Returns (prog, w8)."""
    n_layers = int(prog[L.G_LAYERS])
    out = [int(v) for v in prog[:L.G_LAYER0 + n_layers]]
    w8_parts, w8_len = [w8], int(w8.size)
    done = {}

    def emit(values) -> int:
        off = len(out)
        out.extend(int(v) for v in values)
        return off

    def piece(kind, off, n, make=None):
        """the C offset of prog[off:off + n] (transformed by ``make``), emitted once per (kind, off)"""
        if n == 0:
            return 0
        key = (kind, off, n)
        if key not in done:
            vals = prog[off:off + n]
            if off < 0 or off + n > prog.size:
                raise ModelError(f"a record names prog[{off}:{off + n}] outside the program ({prog.size})")
            done[key] = emit(make(vals) if make else vals)
        return done[key]

    def w8_table(off):
        nonlocal w8_len
        key = ("w8", off, 256)
        if key not in done:
            t = prog[off:off + 256].astype(np.int64)
            if t.size != 256 or t.min() < -128 or t.max() > 127:
                raise ModelError("a Dense activation table must hold 256 int8 entries")
            w8_parts.append(t.astype(np.int8))
            done[key] = w8_len
            w8_len += 256
        return done[key]

    lens = c_op_len()
    for k in range(n_layers):
        lo = int(prog[L.G_LAYER0 + k])
        kind, n_dir, dir_len = int(prog[lo + L.L_KIND]), int(prog[lo + L.L_NDIR]), int(prog[lo + L.L_DIRLEN])
        H, n_out, flags = int(prog[lo + L.L_HID]), int(prog[lo + L.L_OUT]), int(prog[lo + L.L_FLAGS])
        new_lo = emit(prog[lo:lo + L.L_HDR + n_dir * dir_len])
        out[L.G_LAYER0 + k] = new_lo
        for d in range(n_dir):
            rec, nrec = lo + L.L_HDR + d * dir_len, new_lo + L.L_HDR + d * dir_len
            if kind == L.KIND_LSTM:
                out[nrec + L.LS_BX] = piece("ints", int(prog[rec + L.LS_BX]), 4 * H)
                out[nrec + L.LS_BH] = piece("ints", int(prog[rec + L.LS_BH]), 4 * H)
                if flags & L.FLAG_PROJ:
                    out[nrec + L.LS_BPROJ] = piece("ints", int(prog[rec + L.LS_BPROJ]), n_out)
            elif kind == L.KIND_DENSE:
                out[nrec + L.DN_B] = piece("ints", int(prog[rec + L.DN_B]), n_out)
                out[nrec + L.DN_M] = piece("ints", int(prog[rec + L.DN_M]), 2 * n_out)
                act = int(prog[rec + L.DN_ACT])
                if act == L.ACT_SOFTMAX:      # float32 exp table, as bits
                    out[nrec + L.DN_LUT] = piece("ints", int(prog[rec + L.DN_LUT]), 256)
                elif act in (L.ACT_SIGMOID, L.ACT_TANH):
                    out[nrec + L.DN_LUT] = w8_table(int(prog[rec + L.DN_LUT]))
                else:
                    out[nrec + L.DN_LUT] = 0
            elif kind == L.KIND_OPS:
                first, n_ops = int(prog[rec + L.OG_OPS]), int(prog[rec + L.OG_NOPS])
                recs = [prog[first + i * L.OPK_REC:first + (i + 1) * L.OPK_REC] for i in range(n_ops)]
                if any(int(r[0]) not in lens for r in recs):
                    raise ModelError("an op record with a code the C runtime has no kernel for")
                # C records: CONV16s split into row ranges of one shift window (conv16_groups); the records
                # first (contiguous), then the arrays they name
                crecs = []
                for r in recs:
                    code = int(r[0])
                    if code != L.OPK_CONV16:
                        crecs.append((r, r[:lens[code]].copy(), None))
                        continue
                    N, m_off = int(r[5]), int(r[7])
                    m16, t = conv16_rows(prog[m_off:m_off + 2 * N])
                    for a, b in conv16_groups(t):
                        c = r[:lens[code]].copy()
                        t0 = min(int(t[a:b].min()), 43)    # t0 + 3 <= 46 keeps every 2-bit delta valid
                        c[4], c[5], c[8], c[12] = int(r[4]) + a * int(r[2]), b - a, t0, int(r[12]) + a
                        crecs.append((r, c, (a, b, m16[a:b], t[a:b])))
                at = [emit(c) for _, c, _ in crecs]
                out[nrec + L.OG_OPS] = at[0] if at else 0
                out[nrec + L.OG_NOPS] = len(crecs)
                for (r, c, rows), o in zip(crecs, at):
                    code = int(r[0])
                    if code in (L.OPK_FC, L.OPK_CONV16):
                        N = int(r[5])
                        if int(r[6]) >= 0:
                            out[o + 6] = piece("ints", int(r[6]), N) + (rows[0] if rows else 0)
                        if code == L.OPK_FC:
                            out[o + 7] = piece("ints", int(r[7]), 2 * N)
                        else:                # [8] (0 in prepare()'s record): the rows' t0
                            out[o + 7] = emit(conv16_packed(rows[2], rows[3], int(c[8])))
                    elif code == L.OPK_ACT16:
                        out[o + 8] = piece("act16", int(r[8]), 256, act16_packed)
                n_st, n_c = int(prog[rec + L.OG_NSTATE]), int(prog[rec + L.OG_NCONST])
                out[nrec + L.OG_STATES] = piece("ints", int(prog[rec + L.OG_STATES]), n_st * L.OG_STATE_REC)
                out[nrec + L.OG_CONSTS] = piece("ints", int(prog[rec + L.OG_CONSTS]), n_c * L.OG_CONST_REC)
                if d == 0 and int(prog[lo + L_ZPS]) != 0:
                    out[new_lo + L_ZPS] = piece("ints", int(prog[lo + L_ZPS]), n_st)
    new = np.array(out, dtype=np.int64)
    if new.min(initial=0) < -2**31 or new.max(initial=0) >= 2**31:
        raise ModelError("model too large for int32 offsets")
    return new.astype(np.int32), np.concatenate(w8_parts) if len(w8_parts) > 1 else w8
