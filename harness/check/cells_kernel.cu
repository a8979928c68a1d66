// The per-cell statistics kernel of harness.check.cells (cells_rule.cuh first).
//
// Grid: one block of 256 threads per (row, head) cell; each thread strides
// over the cell's E elements (E = K * V for the state, V for the output),
// UNROLL at a time (all loaded before any is visited: loads in flight), and
// folds them into its own accumulators; the block reduces them with warp
// shuffles and shared memory (first index wins ties) and thread 0 writes the
// cell's row of results. Tested arrays and the reference are addressed by
// (row, head) strides, each cell's elements contiguous; no tail goes unmasked
// (e < E everywhere).
#define FULL 0xffffffffu
#define UNROLL 4

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

__device__ void reduce_store(Acc& a, Acc* shared, int lane, int warp, int warps) {
    for (int off = 16; off > 0; off >>= 1) merge(a, shuffled(a, off));
    if (lane == 0) shared[warp] = a;
    __syncthreads();
    if (threadIdx.x == 0) for (int w = 1; w < warps; ++w) merge(shared[0], shared[w]);
    __syncthreads();
}

__device__ double reduce_sum(double v, double* shared, int lane, int warp, int warps) {
    v = sum_warp(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    double s = shared[0];
    for (int w = 1; w < warps; ++w) s = __dadd_rn(s, shared[w]);
    __syncthreads();
    return s;
}

__device__ void store(const Acc& a, double* f, long long* i) {
    f[0] = a.max_abs; f[1] = a.max_rel; f[2] = a.worst;
    f[3] = a.worst_x; f[4] = a.worst_ref; f[5] = a.err_sq;
    i[0] = a.i_abs; i[1] = a.i_rel; i[2] = a.i_worst;
    i[3] = a.over; i[4] = a.nan; i[5] = a.inf; i[6] = a.rinf;
}

// T tested arrays against the reference (with the bound when BOUND), and with
// PAIR the first tested array against the second (no bound) in the same pass.
template <typename TX, typename TR, int T, bool BOUND, bool PAIR>
__global__ void __launch_bounds__(256) cell_stats(
    const TX* __restrict__ x0, const TX* __restrict__ x1, long long xs_row, long long xs_head,
    const TR* __restrict__ ref, const double* __restrict__ mag, long long rs_row, long long rs_head,
    int heads, int E,
    double ulps, double c32, double tiny, long long min_e, long long mant, double threshold,
    double* __restrict__ fout, long long* __restrict__ iout)
{
    const long long cell = blockIdx.x;
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
    // UNROLL elements per thread are loaded before any is visited: loads in flight
    for (int base = threadIdx.x; base < E; base += UNROLL * blockDim.x) {
        double rv[UNROLL], mv[UNROLL], xv[UNROLL][T];
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * blockDim.x;
            if (e < E) {
                rv[u] = (double)ref[ro + e];
                mv[u] = BOUND ? mag[ro + e] : 0.0;
                #pragma unroll
                for (int t = 0; t < T; ++t) xv[u][t] = (double)xs[t][e];
            }
        }
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * blockDim.x;
            if (e < E) {
                visit<T, BOUND>(acc, ref_sq, rv[u], mv[u], xv[u], e, p);
                if (PAIR) {
                    double first[1] = {xv[u][0]};
                    visit<1, false>(pair, pair_sq, xv[u][T - 1], 0.0, first, e, p);
                }
            }
        }
    }
    __shared__ Acc shared[32];
    __shared__ double shared_sq[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    double* f = fout + cell * (6 * N + 2);
    long long* i = iout + cell * (7 * N);
    #pragma unroll
    for (int t = 0; t < N; ++t) {
        reduce_store(t < T ? acc[t] : pair[0], shared, lane, warp, warps);
        if (threadIdx.x == 0) store(shared[0], f + 6 * t, i + 7 * t);
    }
    ref_sq = reduce_sum(ref_sq, shared_sq, lane, warp, warps);
    pair_sq = reduce_sum(pair_sq, shared_sq, lane, warp, warps);
    if (threadIdx.x == 0) { f[6 * N] = ref_sq; f[6 * N + 1] = pair_sq; }
}
