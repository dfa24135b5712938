"""The C runtime's copy of a prepared int8 program: weight matrices stored compactly as int8.

``prepare()`` builds one program for the Numba kernels: int32 records ``prog`` and an int16 blob holding the
weight matrices widened to int16 with columns zero-padded to ``PAD``, plus peepholes, activation tables and the
op-graph weights / tables / constants. The C runtime (firmware_host/, ELSTM_FORMAT_VERSION 3) reads the same
records with the LSTM / Dense matrices and the CONV16 weights of the int16 cell graphs (int8 GRU / RNN layers)
moved to an int8 array, rows unpadded (flash = the int8 weight bytes); converter-made op graphs keep their FC
weights in the int16 blob, as the Numba kernels read them. The C
blob holds only the pieces some record names (prepare() adds the LSTM activation tables to every int8 program).
``c_arrays`` derives that copy; it is the one place that knows the difference, used by the C export
(export/to_c.py), the test harness (firmware_host) and the ctypes backend (native.py) at bind time. The
shared ``Prepared`` blob and the layout constants in kernels/layout.py are left as they are.
Pure numpy: no Numba import.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError


def _padded(n: int, pad: int) -> int:
    return (n + pad - 1) // pad * pad


def matrix_fields(prog: np.ndarray):
    """(prog index holding a matrix offset, rows, cols) of every int8 weight matrix the program uses."""
    from .kernels import layout as L
    out = []
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        kind, n_in, H, n_out, flags = (int(prog[lo + i]) for i in (L.L_KIND, L.L_IN, L.L_HID, L.L_OUT,
                                                                     L.L_FLAGS))
        if kind in (L.KIND_GRU, L.KIND_RNN):
            raise ModelError("a GRU / RNN layer record in an int8 program: prepare() lowers int8 GRU / RNN layers "
                             "to op graphs; the C runtime has no such records")
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
            if kind == L.KIND_LSTM:
                out += [(rec + L.LS_WX, 4 * H, n_in), (rec + L.LS_WH, 4 * H, n_out)]
                if flags & L.FLAG_PROJ:
                    out.append((rec + L.LS_PROJ, n_out, H))
            elif kind == L.KIND_DENSE:
                out.append((rec + L.DN_W, n_out, n_in))
            elif kind == L.KIND_OPS:        # CONV16 weights (int8 GRU / RNN cell graphs) are dot-loop matrices
                first = int(prog[rec + L.OG_OPS])
                for i in range(int(prog[rec + L.OG_NOPS])):
                    r = first + i * L.OPK_REC
                    if int(prog[r]) == L.OPK_CONV16:
                        out.append((r + 4, int(prog[r + 5]), int(prog[r + 2])))
    return out     # an op graph's FC weights stay in the int16 blob


TABLE_LEN = 65536   # one gemmlowp activation table (quant/tables.py)


def blob_fields(prog: np.ndarray):
    """(table fields, other fields): (prog index holding a blob offset, elements there) of every int16 piece
    the C runtime reads from the blob: the 65,536-entry activation tables of LSTM layers, and the rest (LSTM
    peepholes, op-graph pieces)."""
    from .kernels import layout as L
    tables, other = [], []
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        kind, flags, H = int(prog[lo + L.L_KIND]), int(prog[lo + L.L_FLAGS]), int(prog[lo + L.L_HID])
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
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
    from .kernels import layout as L
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
    from .kernels import layout as L
    extra, prog = [], np.array(prog, dtype=np.int32, copy=True)
    n = prog.size
    for k, layer in enumerate(spec.layers):
        lo = int(prog[L.G_LAYER0 + k])
        if int(prog[lo + L.L_KIND]) != L.KIND_OPS or layer.kind != "ops":
            continue      # a GRU / RNN cell graph's state is int16 at zero point 0: the zeros elstm_reset writes
        zps = [int(layer.state_quant(i)[1]) for i in range(len(layer.state_shapes()))]
        if zps:
            prog[lo + L_ZPS] = n + len(extra)
            extra += zps
    return np.concatenate([prog, np.asarray(extra, np.int32)]) if extra else prog


L_ZPS = 6   # the reserved layer header slot: the C copy's op-graph state zero points (see above)


def runtime_features(prog: np.ndarray) -> list[str]:
    """The ELSTM_WITH_* macros a C bundle of this (int8, prepare()'s) program compiles its runtime with: the
    layer kinds it has (LSTM, DENSE, OPS), SOFTMAX when a Dense layer ends in softmax, and for op graphs the op
    kernels their records use (OP_FC, OP_CONV16, OP_ACT16, OP_ADD for ADD / SUB, OP_MUL, OP_REQUANT, OP_LUT;
    COPY comes with every op graph). firmware_host/src/edgelstm.c compiles only those (none: everything)."""
    from .kernels import layout as L
    kinds = {L.KIND_LSTM: "LSTM", L.KIND_DENSE: "DENSE", L.KIND_OPS: "OPS"}
    ops = {L.OPK_FC: "OP_FC", L.OPK_CONV16: "OP_CONV16", L.OPK_ACT16: "OP_ACT16", L.OPK_ADD: "OP_ADD",
           L.OPK_SUB: "OP_ADD", L.OPK_MUL: "OP_MUL", L.OPK_REQUANT: "OP_REQUANT", L.OPK_LUT: "OP_LUT"}
    out = set()
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        kind = int(prog[lo + L.L_KIND])
        if kind not in kinds:
            raise ModelError(f"layer {k}: kind {kind} has no C runtime (int8 GRU / RNN layers are op graphs)")
        out.add(kinds[kind])
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
            if kind == L.KIND_DENSE and int(prog[rec + L.DN_ACT]) == L.ACT_SOFTMAX:
                out.add("SOFTMAX")
            elif kind == L.KIND_OPS:
                first = int(prog[rec + L.OG_OPS])
                for i in range(int(prog[rec + L.OG_NOPS])):
                    code = int(prog[first + i * L.OPK_REC])
                    if code in ops:
                        out.add(ops[code])
    order = ["LSTM", "DENSE", "SOFTMAX", "OPS", "OP_FC", "OP_CONV16", "OP_ACT16", "OP_ADD", "OP_MUL", "OP_REQUANT",
             "OP_LUT"]
    return [f"ELSTM_WITH_{n}" for n in order if n in out]


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
    from .kernels.layout import PAD
    prog = np.array(prep.prog, dtype=np.int32, copy=True)
    if spec is not None:
        prog = opgraph_state_zero_points(prog, spec)
    blob = np.asarray(prep.weights)
    mats, w8_len = [], 0
    for field, rows, cols in matrix_fields(prog):
        off, cp = int(prog[field]), _padded(cols, PAD)
        m = blob[off:off + rows * cp].reshape(rows, cp)[:, :cols]
        if m.size and (m.min() < -128 or m.max() > 127):
            raise ModelError("a weight matrix holds values outside int8: not an int8 model")
        mats.append(m.astype(np.int8).ravel())
        prog[field] = w8_len
        w8_len += m.size
    w8 = np.concatenate(mats) if mats else np.zeros(1, np.int8)
    if not compact:
        return prog, w8, blob
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
    return prog, w8, (blob16 if blob16.size else np.zeros(1, np.int16))
