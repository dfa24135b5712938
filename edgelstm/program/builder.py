"""The program builder: appends int32 records to ``prog`` and arrays to the weight blob, returning offsets."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .layout import PAD, pack_blocks, uses_blocks

ALIGN = 64


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


class Builder:
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
            if dtype != np.int16:
                return blob
            out = blob.copy()
            for off, rows, cp, unit in matrices:
                if uses_blocks(unit):
                    out[off:off + rows * cp] = pack_blocks(blob[off:off + rows * cp].reshape(rows, cp))
            tables = [np.asarray(m(), np.int16) for m in makers]
            return np.concatenate([out] + tables) if tables else out
        return make
