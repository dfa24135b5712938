"""Float32 matrix x several vectors, 16 outputs at a time in registers (an LLVM-IR intrinsic, as pairwise.py).

Why: the axpy form ``y[o] += w[j, o] * v[j]`` vectorizes across outputs but loads and stores y for every j, so a
conv's float dot ran at the load/store limit (~15 GFLOP/s here). Numba cannot tell LLVM that y does not alias the
weights, so the accumulators never stay in registers. ``_fblock_P`` keeps P <16 x float> accumulators (one per
vector, i.e. conv output position) in registers over the whole reduction and reads each weight vector once for
all P.

Arithmetic: every output sums in order, y = (((y0 + w0 v0) + w1 v1) + ...), each product and each sum rounded to
float32 separately (fmul then fadd, no fused multiply-add: the IR carries no fast-math flags, so LLVM does not
contract them) -- bit for bit the scalar loop, the axpy form, and the C runtime's plain loop (-ffp-contract=off).

Weight layout: blocks of 16 outputs, (blocks, K, 16) float32: block b, row j at element (b * K + j) * 16.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16


def _make_fblock(P):
    @intrinsic
    def _fblock(typingctx, w, w_off, K, v, v_off, v_stride, y, y_off, y_stride):
        """For p < P: y[y_off + p * y_stride + o] += sum_j w[w_off + j * 16 + o] * v[v_off + p * v_stride + j], in j
        order, o < 16 (y holds the start values, e.g. the bias)."""
        if not all(isinstance(a, types.Array) and a.dtype == types.float32 for a in (w, v, y)):
            return None
        sig = types.void(w, w_off, K, v, v_off, v_stride, y, y_off, y_stride)

        def codegen(context, builder, signature, args):
            tys = signature.args
            intp = context.get_value_type(types.intp)

            def idx(i):
                return context.cast(builder, args[i], tys[i], types.intp)

            w_off_i, k_i, v_off_i, vs_i, y_off_i, ys_i = idx(1), idx(2), idx(4), idx(5), idx(7), idx(8)
            wptr = context.make_array(tys[0])(context, builder, args[0]).data
            vptr = context.make_array(tys[3])(context, builder, args[3]).data
            yptr = context.make_array(tys[6])(context, builder, args[6]).data
            f32 = ir.FloatType()
            vec_t = ir.VectorType(f32, LANES)
            zero_idx = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            ys = [builder.gep(yptr, [builder.add(y_off_i, builder.mul(ys_i, ir.Constant(intp, p)))]) for p in range(P)]
            slots = [cgutils.alloca_once_value(builder, builder.load(builder.bitcast(ys[p], vec_t.as_pointer()),
                                                                     align=4)) for p in range(P)]
            vs = [builder.add(v_off_i, builder.mul(vs_i, ir.Constant(intp, p))) for p in range(P)]
            with cgutils.for_range(builder, k_i) as loop:
                j = loop.index
                wp = builder.gep(wptr, [builder.add(w_off_i, builder.mul(j, ir.Constant(intp, LANES)))])
                wv = builder.load(builder.bitcast(wp, vec_t.as_pointer()), align=4)
                for p in range(P):
                    s = builder.load(builder.gep(vptr, [builder.add(vs[p], j)]))
                    sv = builder.shuffle_vector(builder.insert_element(ir.Constant(vec_t, None), s,
                                                                       ir.Constant(ir.IntType(32), 0)),
                                                ir.Constant(vec_t, None), zero_idx)
                    builder.store(builder.fadd(builder.load(slots[p]), builder.fmul(wv, sv)), slots[p])
            for p in range(P):
                builder.store(builder.load(slots[p]), builder.bitcast(ys[p], vec_t.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen
    return _fblock


_fblock1, _fblock2, _fblock3, _fblock4 = (_make_fblock(P) for P in (1, 2, 3, 4))
