"""Bit-level intrinsics for Numba kernels: reinterpretation of float64 <-> int64 (a no-op for the CPU; lets LLVM
vectorise code that reads exponents and mantissas, which `np.frexp` or an array view per value would not), an
8-lane range mask over a row and count-trailing-zeros, with which a kernel copies the few values of a row in a
range without a branch or a dependent store per value (`prob_sets._gather`)."""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def f64_bits(typingctx, x):
    """Reinterpret a float64 as int64 (no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def bits_f64(typingctx, x):
    """Reinterpret an int64 as float64 (no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def uint_float(typingctx, x):
    """Reinterpret an unsigned 32- or 64-bit integer as the float of the same width (no conversion)."""
    if not isinstance(x, types.Integer) or x.bitwidth not in (32, 64):
        return None
    ftype, irtype = (types.float32, ir.FloatType()) if x.bitwidth == 32 else (types.float64, ir.DoubleType())

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], irtype)
    return ftype(x), codegen


@intrinsic
def range_mask8(typingctx, arr, i, j, lo, hi):
    """int64 whose bit t (0 <= t < 8) is set when lo <= arr[i, j + t] < hi, the values compared as float64 (as
    `np.float64(arr[i, j + t]) >= lo` is); one 8-lane load, two vector compares and a move of the mask. `arr` is a
    C-contiguous 2-D float32 or float64 array and the caller keeps j + 8 <= arr.shape[1] (no bounds check)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and arr.layout == "C"
            and arr.dtype in (types.float32, types.float64)):
        return None
    sig = types.int64(arr, types.intp, types.intp, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        a, ii, jj, lo_, hi_ = args
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, a)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [ii, jj])
        f32 = aty.dtype == types.float32
        vt = ir.VectorType(ir.FloatType() if f32 else ir.DoubleType(), 8)
        v = builder.load(builder.bitcast(ptr, vt.as_pointer()), align=4 if f32 else 8)
        dt = ir.VectorType(ir.DoubleType(), 8)
        vd = builder.fpext(v, dt) if f32 else v
        undef = ir.Constant(dt, ir.Undefined)
        lane0 = ir.Constant(ir.IntType(32), 0)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8)
        lov = builder.shuffle_vector(builder.insert_element(undef, lo_, lane0), undef, zeros)
        hiv = builder.shuffle_vector(builder.insert_element(undef, hi_, lane0), undef, zeros)
        m = builder.and_(builder.fcmp_ordered(">=", vd, lov), builder.fcmp_ordered("<", vd, hiv))
        return builder.zext(builder.bitcast(m, ir.IntType(8)), ir.IntType(64))
    return sig, codegen


@intrinsic
def cttz64(typingctx, x):
    """The index of the lowest set bit of an int64 (undefined for 0: callers test for 0 first)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
    return types.int64(x), codegen
