"""Typed views of a byte buffer without ``ndarray.view``'s checks.

``work[a:b].view(np.int16)`` costs ~20 ns inside a kernel here (slice, then itemsize, contiguity and
divisibility checks), and a streaming step made ~12 of them per call.  ``view_i16(buf, byte_off, n)`` and
friends build the 1-D array struct directly: a pointer ``byte_off`` bytes into ``buf``'s data, n elements,
and NO memory owner (a null meminfo), so neither the view nor any slice of it is reference counted: the
cells slice their buffers ~60 times per step, and each slice of an owned array costs an atomic increment and
decrement (-10% of a whole LSTM 40-64 step when removed).  Valid while ``buf`` is alive, i.e. inside the
kernel call that made it; never returned.  No checks: callers pass offsets the runtime laid out (64-byte
aligned, inside the buffer), like every other offset a kernel reads.
"""
from llvmlite import ir
from numba import types
from numba.core.imputils import impl_ret_untracked
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array


def _make_view(dtype):
    @intrinsic
    def _view(typingctx, buf, byte_off, n):
        if not (isinstance(buf, types.Array) and isinstance(byte_off, types.Integer)
                and isinstance(n, types.Integer)):
            return None
        retty = types.Array(dtype, 1, "C")

        def codegen(context, builder, signature, args):
            buf_v, off_v, n_v = args
            src = context.make_array(signature.args[0])(context, builder, buf_v)
            off = context.cast(builder, off_v, signature.args[1], types.intp)
            count = context.cast(builder, n_v, signature.args[2], types.intp)
            data_t = context.get_data_type(dtype)
            raw = builder.gep(builder.bitcast(src.data, ir.IntType(8).as_pointer()), [off])
            out = context.make_array(retty)(context, builder)
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(data_t))
            populate_array(out, data=builder.bitcast(raw, data_t.as_pointer()), shape=[count], strides=[itemsize],
                           itemsize=itemsize, meminfo=None)
            return impl_ret_untracked(context, builder, retty, out._getvalue())

        return retty(buf, byte_off, n), codegen
    return _view


view_i16 = _make_view(types.int16)
view_i32 = _make_view(types.int32)
view_f32 = _make_view(types.float32)


@intrinsic
def f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a register bitcast; vectorizes, unlike a view)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.int32)
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen
