"""Vertical int16 matvec with pairwise 16-bit multiply-adds (x86 vpmaddwd, AArch64 smlal/smull2 pairs).

Why an intrinsic: Numba types ``np.int32 * np.int32`` as int64, so a row-interleaved ("vertical") loop
written in Python compiles to vpmulld or scalar code.  ``_pmadd_block`` emits the LLVM vector IR
directly: for one block of ``ROWS`` rows it keeps a <ROWS x i32> accumulator in registers and, for each
column pair (2k, 2k+1), adds ``sext(w_even) * sext(v[2k]) + sext(w_odd) * sext(v[2k+1])`` lane-wise.
LLVM's instruction selection turns that even/odd multiply-add into vpmaddwd on x86 (2 per 16 rows on
AVX2) and widening multiply-accumulates on AArch64; ``bench/pairwise_asm.py`` prints both.

Weight layout (``layout.pack_blocks``, JIT blob only): int8 bytes; block b (rows b*ROWS .. b*ROWS+ROWS-1)
of a (rows, cp) column-padded matrix at byte b * ROWS * cp of the matrix's region, pair k at
+ k * 2 * ROWS bytes: ``[W[r0,2k], W[r0,2k+1], W[r1,2k], W[r1,2k+1], ...]``.  Each step of the inner loop reads one
contiguous 64-byte line of weights and one broadcast pair of the vector, so the vector is never
reduced horizontally.

Integer semantics: every product and sum is int32 with wraparound, the same as the row-major
``_dot_rows`` loop and ``tests/naive.py`` (wrap32 of the exact sum).
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import NJIT_OPTS
from ..program.layout import BLOCK_ROWS as ROWS   # rows per block: one AVX-512 / two AVX2 vpmaddwd / four smlal pairs
from ..program.layout import IXW


FORCE_ISA = None   # bench/pairwise_asm.py sets "generic"/"avx2" to list other targets' code from this host


def _target_isa(context):
    """'avx512' / 'avx2' when the JIT target has them (explicit vpmaddwd), else 'generic' vector IR, which
    AArch64 lowers to widening multiply-accumulates.  x86 needs the explicit form: LLVM reassociates the
    generic even/odd adds across the unrolled loop and then selects vpmulld (5.6 us for 256x64 here)."""
    if FORCE_ISA is not None:
        return FORCE_ISA
    cg = context.codegen()
    triple, features = cg._tm.triple, cg._tm_features
    if triple.startswith("aarch64") and "+dotprod" in features:
        return "sdot"       # Armv8.2 dot product (Pi 5's Cortex-A76): 4 int8 MACs per int32 lane
    if not triple.startswith("x86_64"):
        return "generic"
    if "+avx512bw" in features:
        return "avx512"
    if "+avx2" in features:
        return "avx2"
    return "generic"


def _x86_pmaddwd(builder, isa, a, b):
    """<2*ROWS x i16> a, b -> <ROWS x i32> a[2r]*b[2r] + a[2r+1]*b[2r+1] via vpmaddwd."""
    i16, i32 = ir.IntType(16), ir.IntType(32)
    mod = builder.module
    if isa == "avx512":
        fnty = ir.FunctionType(ir.VectorType(i32, 16), [ir.VectorType(i16, 32)] * 2)
        fn = cgutils.get_or_insert_function(mod, fnty, "llvm.x86.avx512.pmaddw.d.512")
        return builder.call(fn, [a, b])
    fnty = ir.FunctionType(ir.VectorType(i32, 8), [ir.VectorType(i16, 16)] * 2)
    fn = cgutils.get_or_insert_function(mod, fnty, "llvm.x86.avx2.pmadd.wd")
    lo = ir.Constant(ir.VectorType(i32, 16), list(range(16)))
    hi = ir.Constant(ir.VectorType(i32, 16), list(range(16, 32)))
    r_lo = builder.call(fn, [builder.shuffle_vector(a, a, lo), builder.shuffle_vector(b, b, lo)])
    r_hi = builder.call(fn, [builder.shuffle_vector(a, a, hi), builder.shuffle_vector(b, b, hi)])
    return builder.shuffle_vector(r_lo, r_hi, ir.Constant(ir.VectorType(i32, 16), list(range(16))))


def _make_pmadd_blocks(G):
    @intrinsic
    def _pmadd_blocks(typingctx, w, w_off, blk_stride, v, v_off, npairs, acc, acc_off):
        """For the G blocks j < G at BYTE offset w_off + j * blk_stride of w's data (int8 weights, each
        block npairs * 2 * ROWS bytes), with w_j[k, r, e] the byte at + (k * ROWS + r) * 2 + e:
        acc[acc_off + j*ROWS + r] = wrap32(sum_k w_j[k, r, 0] * v[v_off + 2k] + w_j[k, r, 1] * v[v_off + 2k + 1]).
        G independent accumulators hide the multiply-add latency and share one vector broadcast per pair;
        the int8 weights are sign-extended in registers (vpmovsxbw), halving the bytes read per MAC."""
        if not (isinstance(w, types.Array) and w.dtype == types.int16 and isinstance(v, types.Array)
                and v.dtype == types.int16 and isinstance(acc, types.Array) and acc.dtype == types.int32):
            return None
        sig = types.void(w, w_off, blk_stride, v, v_off, npairs, acc, acc_off)

        def codegen(context, builder, signature, args):
            w_val, w_off_val, bs_val, v_val, v_off_val, n_val, acc_val, acc_off_val = args
            tw, tw_off, tbs, tv, tv_off, tn, tacc, tacc_off = signature.args
            intp = context.get_value_type(types.intp)
            w_off_i = context.cast(builder, w_off_val, tw_off, types.intp)
            v_off_i = context.cast(builder, v_off_val, tv_off, types.intp)
            n_i = context.cast(builder, n_val, tn, types.intp)
            acc_off_i = context.cast(builder, acc_off_val, tacc_off, types.intp)
            wptr = context.make_array(tw)(context, builder, w_val).data
            vptr = context.make_array(tv)(context, builder, v_val).data
            accptr = context.make_array(tacc)(context, builder, acc_val).data

            i8, i16, i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
            w8_t = ir.VectorType(i8, 2 * ROWS)
            w_vec_t = ir.VectorType(i16, 2 * ROWS)
            wbytes = builder.bitcast(wptr, i8.as_pointer())
            half32_t = ir.VectorType(i32, ROWS)
            pair_t = ir.VectorType(i16, 2)
            even = ir.Constant(ir.VectorType(i32, ROWS), [2 * r for r in range(ROWS)])
            odd = ir.Constant(ir.VectorType(i32, ROWS), [2 * r + 1 for r in range(ROWS)])
            bcast0 = ir.Constant(ir.VectorType(i32, ROWS), [0] * ROWS)
            bcast1 = ir.Constant(ir.VectorType(i32, ROWS), [1] * ROWS)
            bcast_pairs = ir.Constant(ir.VectorType(i32, 2 * ROWS), [0, 1] * ROWS)
            isa = _target_isa(context)

            slots = [cgutils.alloca_once_value(builder, ir.Constant(half32_t, [0] * ROWS)) for _ in range(G)]
            blk = context.cast(builder, bs_val, tbs, types.intp)

            def weights_at(j, k):    # the <2*ROWS x i8> weight bytes of pair k of block j
                off = builder.add(builder.add(w_off_i, builder.mul(blk, ir.Constant(intp, j))),
                                  builder.mul(k, ir.Constant(intp, 2 * ROWS)))
                return builder.load(builder.bitcast(builder.gep(wbytes, [off]), w8_t.as_pointer()), align=1)

            pairs_left = n_i
            if isa == "sdot":
                # two pairs (4 columns) per step: interleaving the 16-bit pair units of pairs k and k+1 gives each
                # row's 4 weight bytes side by side, ROWS/4 sdot instructions per block (lane r of sdot q = row
                # 4q + r) against the 4 inputs (int8 values: truncation is exact) broadcast to every lane; sums
                # wrap in int32 lanes, the same bits as the pairwise loop. An odd last pair takes the generic path.
                i16x_t = ir.VectorType(i16, ROWS)
                zip16 = ir.Constant(ir.VectorType(i32, 2 * ROWS), [x for r in range(ROWS) for x in (r, ROWS + r)])
                quad_t = ir.VectorType(i16, 4)
                b16 = ir.VectorType(i8, 16)
                rep4 = ir.Constant(ir.VectorType(i32, 16), [0, 1, 2, 3] * 4)
                sdot = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VectorType(i32, 4), [ir.VectorType(i32, 4), b16, b16]),
                    "llvm.aarch64.neon.sdot.v4i32.v16i8")
                with cgutils.for_range(builder, builder.ashr(n_i, ir.Constant(intp, 1))) as loop:
                    k = builder.mul(loop.index, ir.Constant(intp, 2))
                    vp = builder.gep(vptr, [builder.add(v_off_i, builder.mul(k, ir.Constant(intp, 2)))])
                    v4 = builder.trunc(builder.load(builder.bitcast(vp, quad_t.as_pointer()), align=2),
                                       ir.VectorType(i8, 4))
                    vb = builder.shuffle_vector(v4, ir.Constant(ir.VectorType(i8, 4), None), rep4)
                    for j in range(G):
                        lo = builder.bitcast(weights_at(j, k), i16x_t)
                        hi = builder.bitcast(weights_at(j, builder.add(k, ir.Constant(intp, 1))), i16x_t)
                        rows4 = builder.bitcast(builder.shuffle_vector(lo, hi, zip16), ir.VectorType(i8, 4 * ROWS))
                        acc = builder.load(slots[j])
                        parts = []
                        for q in range(ROWS // 4):
                            a_q = builder.shuffle_vector(rows4, rows4, ir.Constant(ir.VectorType(i32, 16),
                                                                                   list(range(16 * q, 16 * q + 16))))
                            s_q = builder.shuffle_vector(acc, acc, ir.Constant(ir.VectorType(i32, 4),
                                                                               list(range(4 * q, 4 * q + 4))))
                            parts.append(builder.call(sdot, [s_q, a_q, vb]))
                        while len(parts) > 1:     # concatenate the <4 x i32> lanes back in row order
                            parts = [builder.shuffle_vector(parts[i], parts[i + 1], ir.Constant(
                                ir.VectorType(i32, 2 * parts[i].type.count), list(range(2 * parts[i].type.count))))
                                for i in range(0, len(parts), 2)]
                        builder.store(parts[0], slots[j])
                pairs_left = builder.and_(n_i, ir.Constant(intp, 1))
                isa = "generic"
            first = builder.sub(n_i, pairs_left)
            with cgutils.for_range(builder, pairs_left) as loop:
                k = builder.add(first, loop.index)
                vp = builder.gep(vptr, [builder.add(v_off_i, builder.mul(k, ir.Constant(intp, 2)))])
                vv = builder.load(builder.bitcast(vp, pair_t.as_pointer()), align=2)
                if isa == "generic":
                    v_e = builder.shuffle_vector(vv, ir.Constant(pair_t, None), bcast0)
                    v_o = builder.shuffle_vector(vv, ir.Constant(pair_t, None), bcast1)
                else:
                    vb = builder.shuffle_vector(vv, ir.Constant(pair_t, None), bcast_pairs)
                for j in range(G):
                    wv = builder.sext(weights_at(j, k), w_vec_t)
                    if isa == "generic":
                        w_e = builder.shuffle_vector(wv, ir.Constant(w_vec_t, None), even)
                        w_o = builder.shuffle_vector(wv, ir.Constant(w_vec_t, None), odd)
                        p_e = builder.mul(builder.sext(w_e, half32_t), builder.sext(v_e, half32_t))
                        p_o = builder.mul(builder.sext(w_o, half32_t), builder.sext(v_o, half32_t))
                        madd = builder.add(p_e, p_o)
                    else:
                        madd = _x86_pmaddwd(builder, isa, wv, vb)
                    builder.store(builder.add(builder.load(slots[j]), madd), slots[j])
            for j in range(G):
                ap = builder.gep(accptr, [builder.add(acc_off_i, ir.Constant(intp, j * ROWS))])
                builder.store(builder.load(slots[j]), builder.bitcast(ap, half32_t.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen
    return _pmadd_blocks


GROUP = 4                                  # blocks per inner loop (independent accumulator chains)
_pmadd_group = _make_pmadd_blocks(GROUP)
_pmadd_block = _make_pmadd_blocks(1)


@njit(**NJIT_OPTS)
def _dot_blocks(wq, w_byte, rows, cp, cols, v, ix, col, add, nb, acc, a_stride):
    """For every sequence n < nb: acc[n * a_stride + r] = wrap32(sum_c W[r, c] * v[ix[n * IXW + col] + add + c])
    for r < rows, W stored by ``layout.pack_blocks`` from byte ``w_byte`` of wq's data (int8, block layout,
    rows a multiple of ROWS, padded row length cp: block b at + b * ROWS * cp bytes).  Only the
    ceil(cols / 2) pairs that hold weights are read.  Blocks are the outer loop, sequences the inner one, so
    a group of GROUP blocks (GROUP * ROWS * cols bytes) is read from memory once for all nb vectors."""
    npairs = (cols + 1) // 2
    stride = cp * ROWS                  # bytes per block
    base = w_byte
    nblocks = rows // ROWS
    b = 0
    while b + GROUP <= nblocks:
        for n in range(nb):
            _pmadd_group(wq, base + b * stride, stride, v, ix[n * IXW + col] + add, npairs, acc,
                         n * a_stride + b * ROWS)
        b += GROUP
    while b < nblocks:
        for n in range(nb):
            _pmadd_block(wq, base + b * stride, stride, v, ix[n * IXW + col] + add, npairs, acc,
                         n * a_stride + b * ROWS)
        b += 1

