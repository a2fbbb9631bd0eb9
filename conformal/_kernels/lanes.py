"""8-lane intrinsics for kernels that hold one row per vector lane (`prob_sets._lane_block`): a block of 8 rows is
transposed into a scratch array t of 8 columns (t[j, l] = label j of row l), and each operation below reads or
writes whole rows of t as one LLVM vector. Written as intrinsics because Numba's loops over the 8 lanes were left
scalar (LLVM cannot tell the scratch arrays apart), and an in-place select was turned into masked stores, which
are slow on AMD CPUs and stop store-to-load forwarding; here every store is a plain vector store."""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
_FLOATS = (types.float32, types.float64)


def _rows8(t):
    return isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C" and t.dtype in _FLOATS


def _vec_ptr(context, builder, aty, ary, idx):
    """Pointer to the 8 elements from index idx of array `ary` (type aty) as a vector pointer, and the vector type."""
    arr = context.make_array(aty)(context, builder, ary)
    ptr = cgutils.get_item_pointer(context, builder, aty, arr, idx)
    vt = ir.VectorType(context.get_data_type(aty.dtype), LANES)
    return builder.bitcast(ptr, vt.as_pointer()), vt


def _align(aty):
    return aty.dtype.bitwidth // 8


def _vfunc(builder, name, vt, nargs):
    e = vt.element
    sfx = "f32" if isinstance(e, ir.FloatType) else "f64" if isinstance(e, ir.DoubleType) else f"i{e.width}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt] * nargs),
                                          f"llvm.{name}.v{vt.count}{sfx}")


def batcher_pairs(k, n=16):
    """Comparator pairs (a, b), a < b, of Batcher's odd-even merge sort on n (a power of two) inputs, less those
    that touch a place >= k: sorting in descending order with places k..n-1 below every value, those are no-ops (a
    pair with b >= k keeps the larger value at a; one with a >= k has b > a >= k too). 32 pairs at k = 10."""
    pairs = []
    p = 1
    while p < n:
        d = p
        while d >= 1:
            for j in range(d % p, n - d, 2 * d):
                for i in range(min(d, n - j - d)):
                    if (i + j) // (2 * p) == (i + j + d) // (2 * p) and i + j + d < k:
                        pairs.append((i + j, i + j + d))
            d //= 2
        p *= 2
    return pairs


MAX_SORT = 16


@intrinsic
def sort8(typingctx, t, k):
    """Sort each column of rows 0..k-1 of t (C-contiguous float32/float64, 8 columns) in descending order, for
    1 <= k <= 16 (other k: t is left as it is): one straight-line network per k (`batcher_pairs`), the rows held
    in registers. The caller guarantees no NaN in t: with `nnan`, max and min are one instruction each (which of
    0.0 and -0.0 lands where is then unspecified; the callers treat them as the same value)."""
    if not _rows8(t):
        return None

    def codegen(context, builder, sig, args):
        tt, kk = args
        aty = sig.args[0]
        zero = ir.Constant(ir.IntType(64), 0)
        done = builder.append_basic_block("sort8.done")
        sw = builder.switch(kk, done)
        for k in range(2, MAX_SORT + 1):
            bb = builder.append_basic_block(f"sort8.k{k}")
            sw.add_case(ir.Constant(kk.type, k), bb)
            builder.position_at_end(bb)
            ptrs = [_vec_ptr(context, builder, aty, tt, [ir.Constant(ir.IntType(64), j), zero])[0] for j in range(k)]
            vt = ptrs[0].type.pointee
            rows = [builder.load(p, align=_align(aty)) for p in ptrs]
            vmax, vmin = _vfunc(builder, "maxnum", vt, 2), _vfunc(builder, "minnum", vt, 2)
            for a, b in batcher_pairs(k):
                x, y = rows[a], rows[b]
                rows[a] = builder.call(vmax, [x, y], fastmath=("nnan",))
                rows[b] = builder.call(vmin, [x, y], fastmath=("nnan",))
            for p, v in zip(ptrs, rows):
                builder.store(v, p, align=_align(aty))
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()
    return types.none(t, types.intp), codegen


@intrinsic
def umax8(typingctx, acc, t, j):
    """acc[:8] = max(acc[:8], the bit patterns of t[j]) lane by lane, as unsigned integers of t's width."""
    if not (_rows8(t) and isinstance(acc, types.Array) and acc.ndim == 1 and acc.layout == "C"
            and isinstance(acc.dtype, types.Integer) and not acc.dtype.signed
            and acc.dtype.bitwidth == t.dtype.bitwidth):
        return None

    def codegen(context, builder, sig, args):
        aa, tt, jj = args
        cty, aty, _ = sig.args
        zero = ir.Constant(ir.IntType(64), 0)
        pt, _ = _vec_ptr(context, builder, aty, tt, [jj, zero])
        pa, it = _vec_ptr(context, builder, cty, aa, [zero])
        x = builder.bitcast(builder.load(pt, align=_align(aty)), it)
        m = builder.call(_vfunc(builder, "umax", it, 2), [builder.load(pa, align=_align(cty)), x])
        builder.store(m, pa, align=_align(cty))
        return context.get_dummy_value()
    return types.none(acc, t, types.intp), codegen


@intrinsic
def add8(typingctx, s, q, t, j):
    """s[q, :] += float64(t[j, :]) lane by lane (s: C-contiguous float64, 8 columns)."""
    if not (_rows8(t) and _rows8(s) and s.dtype == types.float64):
        return None

    def codegen(context, builder, sig, args):
        ss, qq, tt, jj = args
        sty, _, aty, _ = sig.args
        zero = ir.Constant(ir.IntType(64), 0)
        pt, _ = _vec_ptr(context, builder, aty, tt, [jj, zero])
        ps, dt = _vec_ptr(context, builder, sty, ss, [qq, zero])
        x = builder.load(pt, align=_align(aty))
        if aty.dtype == types.float32:
            x = builder.fpext(x, dt)
        builder.store(builder.fadd(builder.load(ps, align=8), x), ps, align=8)
        return context.get_dummy_value()
    return types.none(s, types.intp, t, types.intp), codegen


@intrinsic
def walk8(typingctx, t, k, bounds, n_in):
    """The walk of `prob_sets._lane_block` over places r = 0..k-1 of t (each lane sorted in descending p, t[k]
    below every probability), in registers: S = the float64 sum of places 0..r; at the last place of a tie group
    (t[r + 1] != t[r]) the group is surely in when S <= bounds[0, r + 1], surely out when S > bounds[1, r + 1],
    else undecided. Stores n_in[l] = r + 1 of lane l's last surely-in group end (0 if none); returns the mask
    of the lanes with an undecided group end (bit l for lane l). The lanes run as two halves of 4 (one AVX2
    register of float64 each), so no mask changes width."""
    if not (_rows8(t) and isinstance(bounds, types.Array) and bounds.ndim == 2 and bounds.dtype == types.float64
            and bounds.layout == "C" and isinstance(n_in, types.Array) and n_in.ndim == 1 and n_in.layout == "C"
            and n_in.dtype == types.int64):
        return None
    sig = types.int64(t, types.intp, bounds, n_in)

    def codegen(context, builder, sig, args):
        tt, kk, bb, nn = args
        aty, _, bty, nty = sig.args
        i64 = ir.IntType(64)
        zero = ir.Constant(i64, 0)
        one = ir.Constant(i64, 1)
        h = LANES // 2
        it = ir.VectorType(i64, h)
        dt = ir.VectorType(ir.DoubleType(), h)
        bt = ir.VectorType(ir.IntType(1), h)
        barr = context.make_array(bty)(context, builder, bb)
        entry = builder.basic_block
        loop = builder.append_basic_block("walk8.loop")
        done = builder.append_basic_block("walk8.done")
        builder.cbranch(builder.icmp_signed(">", kk, zero), loop, done)
        builder.position_at_end(loop)
        r = builder.phi(i64)
        state = [[builder.phi(dt), builder.phi(it), builder.phi(bt)] for _ in range(2)]  # S, n_in, undecided
        r1 = builder.add(r, one)
        pr, _ = _vec_ptr(context, builder, aty, tt, [r, zero])
        pn, _ = _vec_ptr(context, builder, aty, tt, [r1, zero])
        x8 = builder.load(pr, align=_align(aty))
        nx8 = builder.load(pn, align=_align(aty))
        lo = _splat_half(builder, builder.load(cgutils.get_item_pointer(context, builder, bty, barr, [zero, r1])))
        hi = _splat_half(builder, builder.load(cgutils.get_item_pointer(context, builder, bty, barr, [one, r1])))
        rv = _splat_half(builder, r1)
        nxt = []
        for half, (s, nv, am) in enumerate(state):
            idx = ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(half * h, half * h + h)))
            x = builder.shuffle_vector(x8, x8, idx)
            nx = builder.shuffle_vector(nx8, nx8, idx)
            if aty.dtype == types.float32:  # exact
                x = builder.fpext(x, dt)
                nx = builder.fpext(nx, dt)
            end = builder.fcmp_unordered("!=", nx, x)
            s1 = builder.fadd(s, x)
            acc = builder.fcmp_ordered("<=", s1, lo)
            rej = builder.fcmp_ordered(">", s1, hi)
            am1 = builder.or_(am, builder.and_(end, builder.not_(builder.or_(acc, rej))))
            nv1 = builder.select(builder.and_(end, acc), rv, nv)
            nxt.append((s1, nv1, am1))
        tail = builder.basic_block
        builder.cbranch(builder.icmp_signed("<", r1, kk), loop, done)
        r.add_incoming(zero, entry)
        r.add_incoming(r1, tail)
        starts = (ir.Constant(dt, [0.0] * h), ir.Constant(it, [0] * h), ir.Constant(bt, [0] * h))
        for phis, news in zip(state, nxt):
            for phi, start, new in zip(phis, starts, news):
                phi.add_incoming(start, entry)
                phi.add_incoming(new, tail)
        builder.position_at_end(done)
        outs = []
        for half in range(2):
            res = builder.phi(it)
            res.add_incoming(starts[1], entry)
            res.add_incoming(nxt[half][1], tail)
            mask = builder.phi(bt)
            mask.add_incoming(starts[2], entry)
            mask.add_incoming(nxt[half][2], tail)
            outs.append((res, mask))
        cat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(LANES)))
        res8 = builder.shuffle_vector(outs[0][0], outs[1][0], cat)
        mask8 = builder.shuffle_vector(outs[0][1], outs[1][1], cat)
        pni, _ = _vec_ptr(context, builder, nty, nn, [zero])
        builder.store(res8, pni, align=8)
        return builder.zext(builder.bitcast(mask8, ir.IntType(LANES)), i64)
    return sig, codegen


def _splat_half(builder, x):
    h = LANES // 2
    undef = ir.Constant(ir.VectorType(x.type, h), ir.Undefined)
    v = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), h), [0] * h))


@intrinsic
def ge_row(typingctx, src, i, c, out):
    """out[i, :] = src[i, :] >= c for a row of 8 <= K <= 16 labels (C-contiguous src and bool out of the same
    shape): two 8-label compares, at labels 0..7 and K-8..K-1 (overlapping when K < 16: the shared labels get
    the same value twice), and two 8-byte stores; no loop and no scalar tail. c has src's dtype."""
    if not (isinstance(src, types.Array) and src.ndim == 2 and src.layout == "C" and src.dtype in _FLOATS
            and isinstance(out, types.Array) and out.ndim == 2 and out.layout == "C" and out.dtype == types.boolean
            and c == src.dtype):
        return None
    sig = types.none(src, types.intp, c, out)

    def codegen(context, builder, sig, args):
        ss, ii, cc, oo = args
        sty, _, _, oty = sig.args
        sarr = context.make_array(sty)(context, builder, ss)
        k = cgutils.unpack_tuple(builder, sarr.shape, 2)[1]
        zero = ir.Constant(ir.IntType(64), 0)
        last = builder.sub(k, ir.Constant(k.type, LANES))
        cv = _splat(builder, cc)
        bt = ir.VectorType(ir.IntType(8), LANES)
        for j in (zero, last):
            ps, _ = _vec_ptr(context, builder, sty, ss, [ii, j])
            po = builder.bitcast(cgutils.get_item_pointer(context, builder, oty,
                                                          context.make_array(oty)(context, builder, oo), [ii, j]),
                                 bt.as_pointer())
            ge = builder.fcmp_ordered(">=", builder.load(ps, align=_align(sty)), cv)
            builder.store(builder.zext(ge, bt), po, align=1)
        return context.get_dummy_value()
    return sig, codegen


def _splat(builder, x):
    undef = ir.Constant(ir.VectorType(x.type, LANES), ir.Undefined)
    v = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


def _transpose_masks(b):
    """shufflevector masks of one stage of the 8 x 8 transpose (block size b): rows i and i + b (i & b == 0)
    become the interleaved even and odd b-blocks of the pair."""
    mx, my = [], []
    for m in range(LANES):
        blk, off = divmod(m, b)
        base = 2 * (blk // 2) * b + off + (LANES if blk % 2 else 0)
        mx.append(base)
        my.append(base + b)
    return mx, my


def _transpose8(builder, rows):
    i32 = ir.IntType(32)
    for b in (4, 2, 1):
        mx, my = _transpose_masks(b)
        mx = ir.Constant(ir.VectorType(i32, LANES), mx)
        my = ir.Constant(ir.VectorType(i32, LANES), my)
        new = list(rows)
        for i in range(LANES):
            if not i & b:
                new[i] = builder.shuffle_vector(rows[i], rows[i + b], mx)
                new[i + b] = builder.shuffle_vector(rows[i], rows[i + b], my)
        rows = new
    return rows


@intrinsic
def load_block(typingctx, src, i0, t):
    """t[j, l] = src[i0 + l, j] for the K labels of rows i0..i0+7, 8 <= K <= 16 (C-contiguous src, t of t's
    dtype = src's, >= K rows of 8): labels 0..7 and K-8..K-1 of each row as two 8-label loads, each set of 8
    rows transposed in registers (3 shuffle stages) and stored as 8 rows of t (the labels both sets hold are
    stored twice, with the same values)."""
    if not (isinstance(src, types.Array) and src.ndim == 2 and src.layout == "C" and src.dtype in _FLOATS
            and _rows8(t) and t.dtype == src.dtype):
        return None
    sig = types.none(src, types.intp, t)

    def codegen(context, builder, sig, args):
        ss, ii, tt = args
        sty, _, tty = sig.args
        sarr = context.make_array(sty)(context, builder, ss)
        k = cgutils.unpack_tuple(builder, sarr.shape, 2)[1]
        zero = ir.Constant(ir.IntType(64), 0)
        last = builder.sub(k, ir.Constant(k.type, LANES))
        for j0 in (zero, last):
            rows = []
            for w in range(LANES):
                row = builder.add(ii, ir.Constant(ii.type, w))
                p, _ = _vec_ptr(context, builder, sty, ss, [row, j0])
                rows.append(builder.load(p, align=_align(sty)))
            for j, v in enumerate(_transpose8(builder, rows)):
                p, _ = _vec_ptr(context, builder, tty, tt, [builder.add(j0, ir.Constant(j0.type, j)), zero])
                builder.store(v, p, align=_align(tty))
        return context.get_dummy_value()
    return sig, codegen
