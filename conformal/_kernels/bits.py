"""Bit reinterpretation of float64 <-> int64 inside Numba kernels (a no-op for the CPU; lets LLVM vectorise
code that reads exponents and mantissas, which `np.frexp` or an array view per value would not)."""
from __future__ import annotations

from llvmlite import ir
from numba import types
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
