// The element rule of harness.check.cells: one element of a cell folded into
// per-thread accumulators, and two accumulators merged. Plain C++ but for the
// CUDA qualifiers and rounding intrinsics, so that the CPU tests compile it
// with a shim of those (tests/test_check_cells_rule.py) and run it against
// the NumPy-API rule.
#define INF_D __longlong_as_double(0x7ff0000000000000LL)

#define NO_INDEX 0x7fffffff

struct Acc {  // one thread's, then one warp's, then the cell's (indices inside the cell)
    double max_abs, max_rel, worst, worst_x, worst_ref, err_sq;
    int i_abs, i_rel, i_worst, over, nan, inf, rinf;
};

__device__ __forceinline__ bool better(double v, int i, double bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ void keep(double& bv, int& bi, double v, int i) {
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
}

__device__ __forceinline__ void init(Acc& a) {
    a.max_abs = a.max_rel = a.worst = -1.0;
    a.worst_x = a.worst_ref = 0.0;
    a.err_sq = 0.0;
    a.i_abs = a.i_rel = a.i_worst = NO_INDEX;
    a.over = a.nan = a.inf = a.rinf = 0;
}

__device__ __forceinline__ void merge(Acc& a, const Acc& b) {
    keep(a.max_abs, a.i_abs, b.max_abs, b.i_abs);
    keep(a.max_rel, a.i_rel, b.max_rel, b.i_rel);
    if (better(b.worst, b.i_worst, a.worst, a.i_worst)) {
        a.worst = b.worst; a.i_worst = b.i_worst;
        a.worst_x = b.worst_x; a.worst_ref = b.worst_ref;
    }
    a.err_sq = __dadd_rn(a.err_sq, b.err_sq);
    a.over += b.over; a.nan += b.nan; a.inf += b.inf; a.rinf += b.rinf;
}

__device__ __forceinline__ double ulp_of(double r, long long min_e, long long mant) {
    long long e = __double_as_longlong(r) & 0x7FF0000000000000LL;
    e = e > min_e ? e : min_e;
    return __longlong_as_double(e - mant);
}

__device__ __forceinline__ double sign_of(double v) {
    return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : (v == 0.0 ? 0.0 : v));
}

struct Bound { double ulps, c32, tiny, threshold; long long min_e, mant; };

// Whether err / d cannot round above the running maximum w, told without
// dividing: t = w * d * (1 - 2**-50), rounded twice, stays below the exact
// w * d by at least 2**-50 - 2**-52 of it when it is finite and normal, so
// err < t puts err / d below w * (1 - 2**-51), which rounds to w at most (for
// a subnormal w) and below it otherwise. Either way the element does not move
// the maximum: a tie at a later index never wins.
__device__ __forceinline__ bool below(double err, double w, double d) {
    const double t = __dmul_rn(__dmul_rn(w, d), 0.99999999999999911182158029987);  // 1 - 2**-50
    return isfinite(t) && t >= 1e-290 && err < t;
}

// The NaN, Inf and overflow rules for an element whose tested value, reference
// or difference is not finite: its error (Inf where it is a failure in itself),
// with the counts, and the overflow saturation of x (the value the worst ratio reports).
template <bool BOUND>
__device__ __forceinline__ double special_error(Acc& a, double& x, const double r, const double b,
                                                const Bound& p) {
    if (BOUND && isinf(x) && isfinite(r) && sign_of(x) == sign_of(r)
        && __dadd_rn(fabs(r), b) >= p.threshold) {
        x = sign_of(r) * fmax(p.threshold, fabs(r));
        a.rinf += 1;
    }
    const bool xnan = isnan(x), rnan = isnan(r);
    if (xnan && rnan) return 0.0;
    if ((xnan && !rnan) || (isinf(x) && !isinf(r))) {
        a.nan += (xnan && !rnan);
        a.inf += (isinf(x) && !isinf(r));
        return INF_D;
    }
    const double err = (x == r) ? 0.0 : fabs(__dsub_rn(x, r));
    return isnan(err) ? INF_D : err;
}

// One element's error folded into a thread's accumulators. FINITE: x, r and
// err are finite (the common case), so the rules above do not apply and an
// exact match cannot move a maximum the thread already holds (its elements
// come in increasing index order, so a tie never wins).
template <bool FINITE, bool BOUND>
__device__ __forceinline__ void fold(Acc& a, const double err, const double x, const double r,
                                     const double b, const double floor, const int e) {
    if (FINITE || isfinite(err)) a.err_sq = __dadd_rn(a.err_sq, __dmul_rn(err, err));
    keep(a.max_abs, a.i_abs, err, e);
    const bool zero_held = FINITE && err == 0.0 && a.max_rel >= 0.0;
    if (!zero_held && !below(err, a.max_rel, floor)) {  // divide only where the maximum may move
        double rel = __ddiv_rn(err, floor);
        if (isnan(rel)) rel = INF_D;
        keep(a.max_rel, a.i_rel, rel, e);
    }
    // err <= b means a ratio <= 1: not over, and below() says not the worst
    // (below() is false for an infinite or NaN b)
    if (BOUND && !(err <= b && below(err, a.worst, b))) {
        double ratio = (err == 0.0) ? 0.0 : __ddiv_rn(err, b);
        if (isnan(ratio)) ratio = INF_D;
        a.over += (ratio > 1.0);
        if (better(ratio, e, a.worst, a.i_worst)) {
            a.worst = ratio; a.i_worst = e; a.worst_x = x; a.worst_ref = r;
        }
    }
}

// Element e of a cell against the reference r (magnitude m) for each of T
// tested values xs. A thread visits its elements in increasing e.
template <int T, bool BOUND>
__device__ __forceinline__ void visit(
    Acc (&acc)[T], double& ref_sq, const double r, const double m, double (&xs)[T], const int e,
    const Bound& p)
{
    const bool rfin = isfinite(r);
    if (rfin) ref_sq = __dadd_rn(ref_sq, __dmul_rn(r, r));
    double b = 0.0;
    if (BOUND) {
        b = ulp_of(r, p.min_e, p.mant);
        if (p.ulps != 1.0) b = __dmul_rn(b, p.ulps);
        b = __dadd_rn(b, __dmul_rn(p.c32, m));
        b = __dadd_rn(b, p.tiny);
    }
    const double floor = isnan(r) ? r : fmax(fabs(r), 2.2250738585072014e-308);
    #pragma unroll
    for (int t = 0; t < T; ++t) {
        double x = xs[t];
        const double err = fabs(__dsub_rn(x, r));
        if (rfin && err <= 1.7976931348623157e308) {  // x finite too: the plain rule
            fold<true, BOUND>(acc[t], err, x, r, b, floor, e);
        } else {
            const double special = special_error<BOUND>(acc[t], x, r, b, p);
            fold<false, BOUND>(acc[t], special, x, r, b, floor, e);
        }
    }
}
