"""The C runtime's copy of a prepared int8 program: weight matrices stored compactly as int8.

``prepare()`` builds one program for the Numba kernels: int32 records ``prog`` and an int16 blob holding the
weight matrices widened to int16 with columns zero-padded to ``PAD``, plus peepholes and activation tables.
The C runtime (firmware_host/, ELSTM_FORMAT_VERSION 2) reads the same records with the matrices moved to
an int8 array, rows unpadded (flash = the int8 weight bytes), widened on the fly in its dot loop.
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
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
            if kind == L.KIND_LSTM:
                out += [(rec + L.LS_WX, 4 * H, n_in), (rec + L.LS_WH, 4 * H, n_out)]
                if flags & L.FLAG_PROJ:
                    out.append((rec + L.LS_PROJ, n_out, H))
            elif kind == L.KIND_GRU:
                out += [(rec + L.GR_WX, 3 * H, n_in), (rec + L.GR_WH, 3 * H, H)]
            elif kind == L.KIND_RNN:
                out += [(rec + L.RN_WX, H, n_in), (rec + L.RN_WH, H, H)]
            elif kind == L.KIND_DENSE:
                out.append((rec + L.DN_W, n_out, n_in))
    return out     # an op graph (KIND_OPS) reads its FC weights from the int16 blob: no int8 matrix here


TABLE_LEN = 65536   # one gemmlowp activation table (quant/tables.py)


def blob_fields(prog: np.ndarray):
    """(table fields, other fields): prog indices holding offsets of the int16 pieces left in the blob,
    the 65,536-entry activation tables and the rest (LSTM peepholes)."""
    from .kernels import layout as L
    tables, other = [], []
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        kind, flags = int(prog[lo + L.L_KIND]), int(prog[lo + L.L_FLAGS])
        t = {L.KIND_LSTM: [L.LS_SIG, L.LS_TANH3, L.LS_TANH_CELL], L.KIND_GRU: [L.GR_SIG, L.GR_TANH3],
             L.KIND_RNN: [L.RN_TANH3]}.get(kind, [])
        o = [L.LS_PEEP] if kind == L.KIND_LSTM and flags & L.FLAG_PEEP else []
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
            tables += [rec + f for f in t]
            other += [rec + f for f in o]
            if kind == L.KIND_OPS:
                other += opgraph_blob_fields(prog, rec)
    return tables, other


def opgraph_blob_fields(prog: np.ndarray, rec: int) -> list:
    """prog indices of an op-graph record holding blob offsets: FC weights, LUT tables, state requantize
    tables (when present, else -1: left out) and constant tensors. The op graph keeps its FC weights,
    tables and constants in the int16 blob (the C runtime reads them there, as the Numba kernels do)."""
    from .kernels import layout as L
    out = []
    first, n_ops = int(prog[rec + L.OG_OPS]), int(prog[rec + L.OG_NOPS])
    for i in range(n_ops):
        r = first + i * L.OPK_REC
        op = int(prog[r])
        if op == L.OPK_FC:
            out.append(r + 4)
        elif op == L.OPK_LUT:
            out.append(r + 5)
    st = int(prog[rec + L.OG_STATES])
    for i in range(int(prog[rec + L.OG_NSTATE])):
        f = st + i * L.OG_STATE_REC + 4
        if int(prog[f]) >= 0:
            out.append(f)
    cs = int(prog[rec + L.OG_CONSTS])
    out += [cs + i * L.OG_CONST_REC + 2 for i in range(int(prog[rec + L.OG_NCONST]))]
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
        if int(prog[lo + L.L_KIND]) != L.KIND_OPS:
            continue
        zps = [int(layer.state_quant(i)[1]) for i in range(len(layer.state_shapes()))]
        if zps:
            prog[lo + L_ZPS] = n + len(extra)
            extra += zps
    return np.concatenate([prog, np.asarray(extra, np.int32)]) if extra else prog


L_ZPS = 6   # the reserved layer header slot: the C copy's op-graph state zero points (see above)


def c_arrays(prep, *, tables: bool = True, compact: bool = True, spec=None) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """(prog int32, w8 int8, blob int16) for the C runtime from an int8 ``Prepared``: prog's matrix fields
    point into w8 (row-major, rows of exactly ``cols`` int8), its other weight fields into the blob with the
    matrices cut out. Same values, bit for bit; only where they live changes. ``tables=False`` leaves the
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
    cut, mats, w8_len = [], [], 0     # cut: (offset, length) of the blob pieces left out
    for field, rows, cols in matrix_fields(prog):
        off, cp = int(prog[field]), _padded(cols, PAD)
        m = blob[off:off + rows * cp].reshape(rows, cp)[:, :cols]
        if m.size and (m.min() < -128 or m.max() > 127):
            raise ModelError("a weight matrix holds values outside int8: not an int8 model")
        cut.append((off, rows * cp))
        mats.append(m.astype(np.int8).ravel())
        prog[field] = w8_len
        w8_len += m.size
    w8 = np.concatenate(mats) if mats else np.zeros(1, np.int8)
    table_fields, other_fields = blob_fields(prog)
    if not compact:
        return prog, w8, blob
    if not tables:
        cut += sorted({(int(prog[f]), TABLE_LEN) for f in table_fields})   # tables are shared between layers
        prog[table_fields] = -1
        table_fields = []
    cut.sort()
    starts = np.array([c[0] for c in cut], dtype=np.int64)
    removed_before = np.concatenate([[0], np.cumsum([c[1] for c in cut])])
    for field in table_fields + other_fields:   # a kept piece moves down by the cut pieces before it
        off = int(prog[field])
        prog[field] = off - removed_before[int(np.searchsorted(starts, off))]
    keep = np.ones(blob.size, dtype=bool)
    for off, n in cut:
        keep[off:off + n] = False
    blob16 = np.ascontiguousarray(blob[keep], dtype=np.int16)
    return prog, w8, (blob16 if blob16.size else np.zeros(1, np.int16))
