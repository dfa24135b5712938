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
            else:
                out.append((rec + L.DN_W, n_out, n_in))
    return out


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
    return tables, other


def c_arrays(prep, *, tables: bool = True, compact: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prog int32, w8 int8, blob int16) for the C runtime from an int8 ``Prepared``: prog's matrix fields
    point into w8 (row-major, rows of exactly ``cols`` int8), its other weight fields into the blob with the
    matrices cut out. Same values, bit for bit; only where they live changes. ``tables=False`` leaves the
    activation tables out too (their fields become -1: the C runtime computes gemmlowp's logistic / tanh,
    src/gemmlowp16.h), so flash holds little more than the int8 weights. ``compact=False`` (the ctypes
    backend, where the blob is already in memory) returns ``prep.weights`` itself as the blob, uncopied."""
    from .kernels.layout import PAD
    prog = np.array(prep.prog, dtype=np.int32, copy=True)
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
