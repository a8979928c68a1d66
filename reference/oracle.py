"""Float64 oracle for one GDN decode step, written straight from docs/design.md.

Everything is computed in float64 from the stored input values, vectorised
over rows and heads. ``decode_rows`` is the math for live rows with their
states already gathered (state in the canonical ``[K, V]`` orientation);
``decode_step`` applies it to a whole state pool in chunks of rows so that
memory stays bounded on the largest shapes.

Alongside each result the oracle returns a *magnitude*: for every element,
the sum of the absolute values of the terms that produced it. A correct
fp32 kernel's rounding error is bounded by a small multiple of fp32 epsilon
times that magnitude, whatever the cancellation in the exact value, which is
what lets the harness keep tolerances tight without crying wolf.

The code is NumPy's API, run in the module that owns the arrays it is given
(``reference.namespace``): NumPy on the CPU, CuPy on a GPU. Nothing here
assumes a device, so the one oracle serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.namespace import Array, array_namespace

L2_EPS = 1e-6
SOFTPLUS_THRESHOLD = 20.0
DEFAULT_CHUNK_BYTES = 256 * 2**20


@dataclass
class RowsResult:
    """Oracle results for R live rows (float64, in the inputs' array module)."""

    out: Array  # [R, HV, V]
    state: Array  # [R, HV, K, V]
    out_mag: Array | None = None  # [R, HV, V]
    state_mag: Array | None = None  # [R, HV, K, V]


def _softplus(xp, x: Array) -> Array:
    safe = xp.minimum(x, SOFTPLUS_THRESHOLD)
    return xp.where(x > SOFTPLUS_THRESHOLD, x, xp.log1p(xp.exp(safe)))


def _l2norm(xp, x: Array) -> Array:
    return x / xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True) + L2_EPS)


def split_qkv(qkv: Array, H: int, HV: int, K: int, V: int):
    """Split packed rows [R, 2*H*K + HV*V] into q, k [R, HV, K] and v [R, HV, V].

    q and k are expanded to value heads: value head ``hv`` reads key head
    ``hv // (HV // H)``.
    """
    R = qkv.shape[0]
    q = qkv[:, : H * K].reshape(R, H, K)
    k = qkv[:, H * K : 2 * H * K].reshape(R, H, K)
    v = qkv[:, 2 * H * K :].reshape(R, HV, V)
    group = HV // H
    xp = array_namespace(qkv)
    return xp.repeat(q, group, axis=1), xp.repeat(k, group, axis=1), v


def _vecmat(xp, x: Array, M: Array) -> Array:
    """``x [R, HV, K] @ M [R, HV, K, V] -> [R, HV, V]``, one vector-matrix product per head.

    The same product in either spelling; NumPy keeps its einsum, and other
    modules get a batched matmul, which CuPy runs as one BLAS call where its
    einsum takes a slower general path (docs/performance.md).
    """
    if xp is np:
        return np.einsum("rhk,rhkv->rhv", x, M)
    return xp.matmul(x[..., None, :], M)[..., 0, :]


def gates(a: Array, b: Array, A_log: Array, dt_bias: Array):
    """Decay exponent g and write strength beta, both [R, HV]."""
    xp = array_namespace(a, b, A_log, dt_bias)
    g = -xp.exp(A_log)[None, :] * _softplus(xp, a + dt_bias[None, :])
    e = xp.exp(-xp.abs(b))  # never overflows
    beta = xp.where(b >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return g, beta


def decode_rows(
    qkv: Array,
    a: Array,
    b: Array,
    A_log: Array,
    dt_bias: Array,
    S: Array,
    *,
    H: int,
    scale: float,
    use_qk_l2norm: bool = True,
    with_magnitude: bool = False,
    heads: slice | None = None,
) -> RowsResult:
    """One decode step for R live rows whose states ``S [R, HV, K, V]`` are gathered.

    With ``heads``, ``S`` holds only those value heads (``[R, len(heads), K,
    V]``) and so do the results: callers slice big states into pieces that
    stay in the CPU's caches.

    Everything runs in the array module of ``S``; activations given as NumPy
    arrays are copied there (they are small).
    """
    xp = array_namespace(S)
    f = xp.float64
    qkv, a, b = (xp.asarray(x, dtype=f) for x in (qkv, a, b))
    A_log, dt_bias = xp.asarray(A_log, dtype=f), xp.asarray(dt_bias, dtype=f)
    K, V = S.shape[2:]
    HV = a.shape[1]
    q, k, v = split_qkv(qkv, H, HV, K, V)
    if use_qk_l2norm:
        q, k = _l2norm(xp, q), _l2norm(xp, k)
    q = q * scale
    g, beta = gates(a, b, A_log, dt_bias)
    if heads is not None:
        q, k, v, g, beta = (x[:, heads] for x in (q, k, v, g, beta))
    S_new = xp.multiply(S, xp.exp(g)[..., None, None], dtype=f)  # decayed, updated below
    S_abs = xp.abs(S_new) if with_magnitude else None
    u = (v - _vecmat(xp, k, S_new)) * beta[..., None]
    S_new += k[..., :, None] * u[..., None, :]
    # q @ S_new itself, not q @ S_dec + (q . k) u, which reads the state once less:
    # once a state holds Inf the two add Inf and -Inf in other orders, and the
    # output's NaN and Inf must be those of the product a kernel computes
    res = RowsResult(out=_vecmat(xp, q, S_new), state=S_new)
    if with_magnitude:
        k_abs = xp.abs(k)
        u_mag = (xp.abs(v) + _vecmat(xp, k_abs, S_abs)) * beta[..., None]
        S_abs += k_abs[..., :, None] * u_mag[..., None, :]
        res.state_mag = S_abs
        res.out_mag = _vecmat(xp, xp.abs(q), S_abs)
    return res


def to_kv(slots: Array, state_layout: str) -> Array:
    """View slots [..., HV, a, b] in the canonical [..., HV, K, V] orientation."""
    return slots if state_layout == "kv" else slots.swapaxes(-1, -2)


def decode_step(
    mixed_qkv: Array,
    a: Array,
    b: Array,
    A_log: Array,
    dt_bias: Array,
    state: Array,
    state_indices: Array,
    out: Array,
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> None:
    """The contract on arrays of one module: write ``out`` and update ``state`` in place.

    ``state`` is ``[N, HV, V, K]`` (vk) or ``[N, HV, K, V]`` (kv) of any float
    dtype; results are cast to the dtypes of ``out`` and ``state``. Rows with
    a negative slot get a zero output row and touch no slot.
    """
    xp = array_namespace(state)
    HV = state.shape[1]
    K = state.shape[3] if state_layout == "vk" else state.shape[2]
    V = out.shape[2]
    H = (mixed_qkv.shape[1] - HV * V) // (2 * K)
    idx = xp.asarray(state_indices).astype(xp.int64)
    out[idx < 0] = 0
    live = xp.flatnonzero(idx >= 0)
    rows_per_chunk = max(1, chunk_bytes // (6 * HV * K * V * 8))
    for start in range(0, live.size, rows_per_chunk):
        rows = live[start : start + rows_per_chunk]
        slots = idx[rows]
        res = decode_rows(
            mixed_qkv[rows],
            a[rows],
            b[rows],
            A_log,
            dt_bias,
            to_kv(state[slots], state_layout),
            H=H,
            scale=scale,
            use_qk_l2norm=use_qk_l2norm,
        )
        out[rows] = res.out.astype(out.dtype)
        state[slots] = to_kv(res.state, state_layout).astype(state.dtype)
