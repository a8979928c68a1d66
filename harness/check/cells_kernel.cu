// The per-cell statistics kernel of harness.check.cells (cells_rule.cuh first).
//
// Grid: ceil(cells / 8) blocks of 256 threads; each warp owns one (row, head)
// cell (warps past the last cell do nothing). Its 32 lanes stride over the
// cell's E elements (E = K * V for the state, V for the output), UNROLL at a
// time (all loaded before any is visited: loads in flight), each folding its
// own elements in increasing index order into its own accumulators; the warp
// then reduces them with shuffles (first index wins ties) and lane 0 writes
// the cell's row of results. A warp per cell keeps the reduction free of
// shared memory and barriers. Tested arrays and the reference are addressed
// by (row, head) strides, each cell's elements contiguous; no tail goes
// unmasked (e < E everywhere).
#define FULL 0xffffffffu
#define UNROLL 4
#define CELL_THREADS 32
#define BLOCK_THREADS 256

__device__ __forceinline__ Acc shuffled(const Acc& a, int off) {
    Acc b;
    b.max_abs = __shfl_down_sync(FULL, a.max_abs, off);
    b.max_rel = __shfl_down_sync(FULL, a.max_rel, off);
    b.worst = __shfl_down_sync(FULL, a.worst, off);
    b.worst_x = __shfl_down_sync(FULL, a.worst_x, off);
    b.worst_ref = __shfl_down_sync(FULL, a.worst_ref, off);
    b.err_sq = __shfl_down_sync(FULL, a.err_sq, off);
    b.i_abs = __shfl_down_sync(FULL, a.i_abs, off);
    b.i_rel = __shfl_down_sync(FULL, a.i_rel, off);
    b.i_worst = __shfl_down_sync(FULL, a.i_worst, off);
    b.over = __shfl_down_sync(FULL, a.over, off);
    b.nan = __shfl_down_sync(FULL, a.nan, off);
    b.inf = __shfl_down_sync(FULL, a.inf, off);
    b.rinf = __shfl_down_sync(FULL, a.rinf, off);
    return b;
}

__device__ __forceinline__ double sum_warp(double v) {
    for (int off = 16; off > 0; off >>= 1) v = __dadd_rn(v, __shfl_down_sync(FULL, v, off));
    return v;
}

__device__ __forceinline__ void store(const Acc& a, double* f, long long* i) {
    f[0] = a.max_abs; f[1] = a.max_rel; f[2] = a.worst;
    f[3] = a.worst_x; f[4] = a.worst_ref; f[5] = a.err_sq;
    i[0] = a.i_abs; i[1] = a.i_rel; i[2] = a.i_worst;
    i[3] = a.over; i[4] = a.nan; i[5] = a.inf; i[6] = a.rinf;
}

// T tested arrays against the reference (with the bound when BOUND), and with
// PAIR the first tested array against the second (no bound) in the same pass.
template <typename TX, typename TR, int T, bool BOUND, bool PAIR>
__global__ void __launch_bounds__(BLOCK_THREADS, 2) cell_stats(
    const TX* __restrict__ x0, const TX* __restrict__ x1, long long xs_row, long long xs_head,
    const TR* __restrict__ ref, const double* __restrict__ mag, long long rs_row, long long rs_head,
    int heads, int E, long long cells,
    double ulps, double c32, double tiny, long long min_e, long long mant, double threshold,
    double* __restrict__ fout, long long* __restrict__ iout)
{
    const long long cell =
        (long long)blockIdx.x * (BLOCK_THREADS / CELL_THREADS) + threadIdx.x / CELL_THREADS;
    if (cell >= cells) return;  // a whole warp: the shuffles below stay full-warp
    const int lane = threadIdx.x % CELL_THREADS;
    const long long row = cell / heads, head = cell % heads;
    const long long xo = row * xs_row + head * xs_head, ro = row * rs_row + head * rs_head;
    const TX* xs[2] = {x0 + xo, x1 + xo};
    const Bound p = {ulps, c32, tiny, threshold, min_e, mant};
    constexpr int N = T + (PAIR ? 1 : 0);
    Acc acc[T], pair[1];
    #pragma unroll
    for (int t = 0; t < T; ++t) init(acc[t]);
    init(pair[0]);
    double ref_sq = 0.0, pair_sq = 0.0;
    for (int base = lane; base < E; base += UNROLL * CELL_THREADS) {
        double rv[UNROLL], mv[UNROLL], xv[UNROLL][T];
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * CELL_THREADS;
            if (e < E) {
                rv[u] = (double)ref[ro + e];
                mv[u] = BOUND ? mag[ro + e] : 0.0;
                #pragma unroll
                for (int t = 0; t < T; ++t) xv[u][t] = (double)xs[t][e];
            }
        }
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * CELL_THREADS;
            if (e < E) {
                visit<T, BOUND>(acc, ref_sq, rv[u], mv[u], xv[u], e, p);
                if (PAIR) {
                    double first[1] = {xv[u][0]};
                    visit<1, false>(pair, pair_sq, xv[u][T - 1], 0.0, first, e, p);
                }
            }
        }
    }
    double* f = fout + cell * (6 * N + 2);
    long long* i = iout + cell * (7 * N);
    #pragma unroll
    for (int t = 0; t < N; ++t) {
        Acc& a = t < T ? acc[t] : pair[0];
        for (int off = 16; off > 0; off >>= 1) merge(a, shuffled(a, off));
        if (lane == 0) store(a, f + 6 * t, i + 7 * t);
    }
    ref_sq = sum_warp(ref_sq);
    pair_sq = sum_warp(pair_sq);
    if (lane == 0) { f[6 * N] = ref_sq; f[6 * N + 1] = pair_sq; }
}
