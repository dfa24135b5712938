"""python bench/pi_sdot_check.py [ASM_OUT]: the pairwise dot loop (kernels/pairwise._dot_blocks) against numpy on random int8 data, for odd and even
column counts, 1..6 blocks (group and single-block paths), several sequences; prints the dot loop's
multiply-add instructions."""
import re
import numpy as np
from numba import njit
from edgelstm.kernels import pairwise
from edgelstm.program.layout import IXW, BLOCK_ROWS as R

f = njit(pairwise._dot_blocks.py_func)
rng = np.random.default_rng(0)
bad = 0
for cols in (1, 2, 3, 5, 8, 31, 32, 40, 63, 64, 100):
    for nblocks in (1, 4, 5, 6):
        rows, cp = nblocks * R, (cols + 63) // 64 * 64
        W = rng.integers(-128, 128, (rows, cp)).astype(np.int8)
        W[:, cols:] = 0
        # layout.pack_blocks: block b, pair k at b*R*cp + k*2*R bytes: [W[r0,2k], W[r0,2k+1], W[r1,2k], ...]
        packed = W.reshape(nblocks, R, cp // 2, 2).transpose(0, 2, 1, 3).reshape(-1)
        wq = np.zeros((packed.size + 64) // 2 + 8, np.int16)
        wq.view(np.int8)[:packed.size] = packed
        nb = 3
        v = np.zeros(nb * 128 + 64, np.int16)
        v[:nb * 128] = rng.integers(-128, 128, nb * 128)
        ix = np.zeros(nb * IXW, np.int32)
        for n in range(nb):
            ix[n * IXW] = n * 128
        acc = np.zeros(nb * rows + 64, np.int32)
        f(wq, np.int64(0), np.int64(rows), np.int64(cp), np.int64(cols), v, ix, np.int64(0), np.int64(0),
          np.int64(nb), acc, np.int64(rows))
        for n in range(nb):
            want = (W[:, :cols].astype(np.int64) @ v[n * 128:n * 128 + cols].astype(np.int64)).astype(np.int32)
            if not np.array_equal(acc[n * rows:(n + 1) * rows], want):
                bad += 1
                print("MISMATCH cols", cols, "blocks", nblocks, "seq", n)
asm = f.inspect_asm(f.signatures[0])
ops = re.findall(r"\b(sdot|smlal2?|smull2?|sadalp|vpmaddwd)\b", asm)
print("isa features:", f.targetctx.codegen()._tm_features[:60], "...")
print("dot loop instructions:", {o: ops.count(o) for o in sorted(set(ops))})
print("mismatches:", bad, "of", 11 * 4 * 3)
import sys
if len(sys.argv) > 1:
    open(sys.argv[1], "w").write(asm)
