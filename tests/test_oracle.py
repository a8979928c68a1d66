"""Tests of the float64 oracle (reference/oracle.py).

The oracle is checked against a second, deliberately naive implementation
written here straight from docs/design.md: explicit Python loops over rows, value
heads and elements, ``math.exp`` / ``math.log1p`` for the gates and
``np.dot`` for the dot products. The two share no code, so agreement to
float64 rounding means both read the design the same way.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference import oracle
from reference.oracle import decode_rows, decode_step, gates, split_qkv

ROOT = Path(__file__).resolve().parent.parent
F64 = np.float64


# --------------------------------------------------------------------------
# The naive implementation
# --------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    return x if x > 20.0 else math.log1p(math.exp(x))


def naive_decode(
    mixed_qkv,
    a,
    b,
    A_log,
    dt_bias,
    state,
    state_indices,
    out,
    *,
    H: int,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
    head_map=None,
) -> None:
    """Per-row, per-head loops; updates ``state`` (float64) and ``out`` in place."""
    B = mixed_qkv.shape[0]
    HV = state.shape[1]
    K = state.shape[3] if state_layout == "vk" else state.shape[2]
    V = out.shape[2]
    group = HV // H
    if head_map is None:

        def head_map(hv):
            return hv // group

    for n in range(B):
        s = int(state_indices[n])
        if s < 0:
            for hv in range(HV):
                for j in range(V):
                    out[n, hv, j] = 0.0
            continue
        for hv in range(HV):
            h = head_map(hv)
            q = np.array([float(mixed_qkv[n, h * K + i]) for i in range(K)], dtype=F64)
            k = np.array([float(mixed_qkv[n, H * K + h * K + i]) for i in range(K)], dtype=F64)
            v = np.array([float(mixed_qkv[n, 2 * H * K + hv * V + j]) for j in range(V)], F64)
            if use_qk_l2norm:
                q = q / math.sqrt(float(np.dot(q, q)) + 1e-6)
                k = k / math.sqrt(float(np.dot(k, k)) + 1e-6)
            q = q * scale
            x = float(a[n, hv]) + float(dt_bias[hv])
            g = -math.exp(float(A_log[hv])) * _softplus(x)
            beta = _sigmoid(float(b[n, hv]))
            S = np.empty((K, V), dtype=F64)
            for i in range(K):
                for j in range(V):
                    raw = state[s, hv, j, i] if state_layout == "vk" else state[s, hv, i, j]
                    S[i, j] = float(raw)
            decay = math.exp(g)
            for i in range(K):
                for j in range(V):
                    S[i, j] = S[i, j] * decay
            u = np.empty(V, dtype=F64)
            for j in range(V):
                u[j] = (v[j] - float(np.dot(k, S[:, j]))) * beta
            for i in range(K):
                for j in range(V):
                    S[i, j] = S[i, j] + k[i] * u[j]
            for j in range(V):
                out[n, hv, j] = float(np.dot(q, S[:, j]))
            for i in range(K):
                for j in range(V):
                    if state_layout == "vk":
                        state[s, hv, j, i] = S[i, j]
                    else:
                        state[s, hv, i, j] = S[i, j]


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def make_inputs(
    seed: int,
    *,
    B: int = 4,
    H: int = 2,
    HV: int = 4,
    K: int = 6,
    V: int = 5,
    N: int = 7,
    layout: str = "vk",
    indices=None,
):
    rng = np.random.default_rng(seed)
    D = 2 * H * K + HV * V
    mixed = rng.standard_normal((B, D))
    a = rng.standard_normal((B, HV)) * 2.0
    b = rng.standard_normal((B, HV)) * 2.0
    A_log = rng.uniform(-1.0, 1.0, HV)
    dt_bias = rng.standard_normal(HV)
    shape = (N, HV, V, K) if layout == "vk" else (N, HV, K, V)
    state = rng.standard_normal(shape)
    if indices is None:
        indices = rng.permutation(N - 1)[:B]  # never the last slot
    idx = np.asarray(indices, dtype=np.int64)
    out = np.full((B, HV, V), np.nan)
    return dict(
        mixed_qkv=mixed,
        a=a,
        b=b,
        A_log=A_log,
        dt_bias=dt_bias,
        state=state,
        state_indices=idx,
        out=out,
        H=H,
        K=K,
        V=V,
        layout=layout,
    )


def run_oracle(inp, *, scale=None, use_qk_l2norm=True, **kw):
    state = inp["state"].copy()
    out = inp["out"].copy()
    decode_step(
        inp["mixed_qkv"],
        inp["a"],
        inp["b"],
        inp["A_log"],
        inp["dt_bias"],
        state,
        inp["state_indices"],
        out,
        scale=inp["K"] ** -0.5 if scale is None else scale,
        use_qk_l2norm=use_qk_l2norm,
        state_layout=inp["layout"],
        **kw,
    )
    return out, state


def run_naive(inp, *, scale=None, use_qk_l2norm=True, head_map=None):
    state = inp["state"].copy()
    out = inp["out"].copy()
    naive_decode(
        inp["mixed_qkv"],
        inp["a"],
        inp["b"],
        inp["A_log"],
        inp["dt_bias"],
        state,
        inp["state_indices"],
        out,
        H=inp["H"],
        scale=inp["K"] ** -0.5 if scale is None else scale,
        use_qk_l2norm=use_qk_l2norm,
        state_layout=inp["layout"],
        head_map=head_map,
    )
    return out, state


def assert_f64_close(x, ref):
    """Agreement to float64 rounding: a few hundred eps64 of the largest value."""
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(x, ref, rtol=1e-12, atol=1e-13 * scale)


# --------------------------------------------------------------------------
# (1) against the naive implementation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["vk", "kv"])
@pytest.mark.parametrize(("H", "HV"), [(2, 2), (2, 4), (2, 6)], ids=["r1", "r2", "r3"])
@pytest.mark.parametrize("l2", [True, False], ids=["l2", "nol2"])
@pytest.mark.parametrize(("K", "V"), [(6, 5), (4, 7)])
def test_matches_naive(layout, H, HV, l2, K, V):
    inp = make_inputs(H * 100 + HV * 10 + K + V, H=H, HV=HV, K=K, V=V, layout=layout)
    out, state = run_oracle(inp, use_qk_l2norm=l2)
    n_out, n_state = run_naive(inp, use_qk_l2norm=l2)
    assert np.isfinite(out).all()
    assert_f64_close(out, n_out)
    assert_f64_close(state, n_state)
    # The state really changed for the live slots (the test is not vacuous).
    live = inp["state_indices"]
    assert not np.allclose(state[live], inp["state"][live])


@pytest.mark.parametrize("layout", ["vk", "kv"])
def test_custom_scale(layout):
    inp = make_inputs(11, layout=layout)
    out, state = run_oracle(inp, scale=0.37)
    n_out, n_state = run_naive(inp, scale=0.37)
    assert_f64_close(out, n_out)
    assert_f64_close(state, n_state)
    default_out, default_state = run_oracle(inp)
    # The scale applies to q only: the state is the same, the output scales.
    np.testing.assert_array_equal(state, default_state)
    assert_f64_close(out, default_out * (0.37 / inp["K"] ** -0.5))


@pytest.mark.parametrize(("H", "HV"), [(2, 4), (2, 6), (3, 6)])
def test_gqa_mapping_is_hv_div_group(H, HV):
    """Value head hv reads key head hv // (HV // H); hv % H gives other numbers."""
    inp = make_inputs(5, H=H, HV=HV)
    out, state = run_oracle(inp)
    n_out, _ = run_naive(inp)
    w_out, w_state = run_naive(inp, head_map=lambda hv: hv % H)
    assert_f64_close(out, n_out)
    assert np.max(np.abs(out - w_out)) > 1e-2
    assert np.max(np.abs(state - w_state)) > 1e-2


def test_split_qkv_head_expansion():
    H, HV, K, V = 2, 6, 3, 2
    row = np.arange(2 * H * K + HV * V, dtype=F64)[None, :]
    q, k, v = split_qkv(row, H, HV, K, V)
    assert q.shape == (1, HV, K) and k.shape == (1, HV, K) and v.shape == (1, HV, V)
    for hv in range(HV):
        h = hv // (HV // H)
        np.testing.assert_array_equal(q[0, hv], row[0, h * K : h * K + K])
        np.testing.assert_array_equal(k[0, hv], row[0, H * K + h * K : H * K + h * K + K])
        np.testing.assert_array_equal(v[0, hv], row[0, 2 * H * K + hv * V : 2 * H * K + hv * V + V])


def test_square_layouts_are_distinguished():
    """With K == V a transposed read is invisible in the shapes; values must differ."""
    inp = make_inputs(3, K=5, V=5, layout="vk")
    out_vk, _ = run_oracle(inp)
    as_kv = dict(inp, layout="kv")
    out_kv, _ = run_oracle(as_kv)
    assert_f64_close(out_vk, run_naive(inp)[0])
    assert_f64_close(out_kv, run_naive(as_kv)[0])
    assert np.max(np.abs(out_vk - out_kv)) > 1e-2


@pytest.mark.parametrize("layout", ["vk", "kv"])
def test_padding_rows(layout):
    N = 6
    inp = make_inputs(8, B=5, N=N, layout=layout, indices=[2, -1, 0, -1, 4])
    inp["out"][:] = 7.0  # stale values from an earlier replay
    out, state = run_oracle(inp)
    n_out, n_state = run_naive(inp)
    assert_f64_close(out, n_out)
    assert_f64_close(state, n_state)
    assert (out[[1, 3]] == 0.0).all()
    assert np.all(out[[0, 2, 4]] != 7.0)
    # Slots no live row names are bit-identical; in particular the last slot,
    # which slot -1 names under Python indexing.
    for slot in (1, 3, N - 1):
        np.testing.assert_array_equal(state[slot], inp["state"][slot])
    for slot in (0, 2, 4):
        assert not np.array_equal(state[slot], inp["state"][slot])


def test_all_padding_touches_nothing():
    inp = make_inputs(9, B=3, indices=[-1, -1, -1])
    out, state = run_oracle(inp)
    assert (out == 0.0).all()
    np.testing.assert_array_equal(state, inp["state"])


def test_slot_is_taken_from_indices_not_row():
    inp = make_inputs(10, B=3, N=5, indices=[3, 0, 1])
    out, state = run_oracle(inp)
    n_out, n_state = run_naive(inp)
    assert_f64_close(out, n_out)
    assert_f64_close(state, n_state)
    np.testing.assert_array_equal(state[2], inp["state"][2])
    np.testing.assert_array_equal(state[4], inp["state"][4])


def test_int32_indices_and_float32_outputs():
    inp = make_inputs(12, layout="kv")
    inp["state"] = inp["state"].astype(np.float32)
    inp["out"] = inp["out"].astype(np.float32)
    inp["state_indices"] = inp["state_indices"].astype(np.int32)
    out, state = run_oracle(inp)
    assert out.dtype == np.float32 and state.dtype == np.float32
    ref_inp = dict(inp, state=inp["state"].astype(F64), out=inp["out"].astype(F64))
    n_out, n_state = run_naive(ref_inp)
    # Computed in float64 from the stored values, then rounded once.
    np.testing.assert_array_equal(out, n_out.astype(np.float32))
    live = inp["state_indices"]
    d = np.abs(state[live].astype(F64) - n_state[live])
    assert np.all(d <= np.abs(np.spacing(n_state[live].astype(np.float32))))


# --------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------


def test_softplus_threshold():
    A_log = np.array([0.3, -0.7, 1.1, 0.0])
    dt_bias = np.zeros(4)
    b = np.zeros((1, 4))
    x = np.array([[25.0, 20.5, 20.0, 19.5]])
    g, _ = gates(x, b, A_log, dt_bias)
    # Above the threshold softplus(x) is exactly x.
    assert g[0, 0] == -math.exp(0.3) * 25.0
    assert g[0, 1] == -np.exp(-0.7) * 20.5
    # At and below it, log(1 + exp(x)), which differs from x in float64.
    assert g[0, 2] == pytest.approx(-math.exp(1.1) * math.log1p(math.exp(20.0)), rel=1e-15)
    assert g[0, 2] != -np.exp(1.1) * 20.0
    assert g[0, 3] == pytest.approx(-math.log1p(math.exp(19.5)), rel=1e-15)
    assert g[0, 3] != -19.5


def test_softplus_uses_a_plus_dt_bias():
    A_log = np.array([0.2, 0.2])
    a = np.array([[15.0, 1.0]])
    dt_bias = np.array([10.0, -3.0])  # a + dt_bias = 25 (> 20) and -2
    g, _ = gates(a, np.zeros((1, 2)), A_log, dt_bias)
    assert g[0, 0] == -np.exp(0.2) * 25.0
    assert g[0, 1] == pytest.approx(-math.exp(0.2) * math.log1p(math.exp(-2.0)), rel=1e-15)


def test_softplus_large_negative_no_overflow():
    A_log = np.array([0.5, 0.5, 2.0])
    a = np.array([[-50.0, -800.0, -1e6]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        g, _ = gates(a, np.zeros((1, 3)), A_log, np.zeros(3))
    assert np.all(np.isfinite(g))
    assert np.all(g <= 0.0)
    assert np.all(np.abs(g) < 1e-20)
    assert g[0, 0] == pytest.approx(-math.exp(0.5) * math.exp(-50.0), rel=1e-12)


def test_sigmoid_extremes():
    b = np.array([[0.0, 50.0, -50.0, 700.0, -700.0, 3.0]])
    _, beta = gates(np.zeros((1, 6)), b, np.zeros(6), np.zeros(6))
    assert beta[0, 0] == 0.5
    assert beta[0, 1] == 1.0
    assert beta[0, 2] == pytest.approx(math.exp(-50.0), rel=1e-12)
    assert beta[0, 3] == 1.0
    assert 0.0 < beta[0, 4] < 1e-300
    assert beta[0, 5] == pytest.approx(_sigmoid(3.0), rel=1e-15)
    with np.errstate(over="ignore"):
        _, beta = gates(np.zeros((1, 2)), np.array([[-1000.0, 1000.0]]), np.zeros(2), np.zeros(2))
    assert beta[0, 0] == 0.0 and beta[0, 1] == 1.0


def test_extreme_gates_match_naive():
    inp = make_inputs(13)
    inp["a"][0] = [30.0, -900.0, 20.0, 0.0]
    inp["b"][1] = [40.0, -40.0, 600.0, -600.0]
    out, state = run_oracle(inp)
    n_out, n_state = run_naive(inp)
    assert np.isfinite(out).all() and np.isfinite(state).all()
    assert_f64_close(out, n_out)
    assert_f64_close(state, n_state)


# --------------------------------------------------------------------------
# (2) Properties of the delta rule
# --------------------------------------------------------------------------


def _rows_inputs(seed, R=3, H=2, HV=4, K=6, V=5):
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((R, 2 * H * K + HV * V))
    a = rng.standard_normal((R, HV))
    b = rng.standard_normal((R, HV))
    A_log = rng.uniform(-1, 1, HV)
    dt_bias = rng.standard_normal(HV)
    S = rng.standard_normal((R, HV, K, V))
    return qkv, a, b, A_log, dt_bias, S, H


@pytest.mark.parametrize("l2", [True, False])
def test_beta_zero_only_decays(l2):
    qkv, a, _, A_log, dt_bias, S, H = _rows_inputs(20)
    b = np.full(a.shape, -1000.0)  # sigmoid underflows to exactly 0
    with np.errstate(over="ignore"):
        g, beta = gates(a, b, A_log, dt_bias)
        res = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=0.4, use_qk_l2norm=l2)
    assert (beta == 0.0).all()
    assert (g < 0).all()
    expected = S * np.exp(g)[..., None, None]
    np.testing.assert_array_equal(res.state, expected)
    assert not np.allclose(res.state, S)  # the decay really acted


def test_beta_tiny_nearly_only_decays():
    qkv, a, _, A_log, dt_bias, S, H = _rows_inputs(21)
    b = np.full(a.shape, -40.0)
    g, _ = gates(a, b, A_log, dt_bias)
    res = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=0.4)
    np.testing.assert_allclose(res.state, S * np.exp(g)[..., None, None], rtol=1e-14, atol=1e-15)


def test_delta_rule_writes_v_into_k_unit_k():
    """g = 0, beta = 1, |k| = 1: after the step S^T k == v exactly (to rounding)."""
    R, H, HV, K, V = 3, 2, 4, 6, 5
    rng = np.random.default_rng(22)
    qkv = rng.standard_normal((R, 2 * H * K + HV * V))
    kpart = qkv[:, H * K : 2 * H * K].reshape(R, H, K)
    kpart /= np.linalg.norm(kpart, axis=-1, keepdims=True)
    qkv[:, H * K : 2 * H * K] = kpart.reshape(R, H * K)
    a = rng.standard_normal((R, HV))
    b = np.full((R, HV), 60.0)  # beta == 1.0
    A_log = np.full(HV, -60.0)  # exp(A_log) ~ 1e-26: g ~ 0, exp(g) == 1.0
    dt_bias = np.zeros(HV)
    S = rng.standard_normal((R, HV, K, V)) * 3.0
    g, beta = gates(a, b, A_log, dt_bias)
    assert (beta == 1.0).all() and (np.exp(g) == 1.0).all()
    res = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=1.0, use_qk_l2norm=False)
    _, k, v = split_qkv(qkv, H, HV, K, V)
    written = np.einsum("rhk,rhkv->rhv", k, res.state)
    np.testing.assert_allclose(written, v, rtol=0, atol=1e-13)
    before = np.einsum("rhk,rhkv->rhv", k, S)
    assert np.max(np.abs(before - v)) > 0.5  # it was not v before the step


def test_delta_rule_writes_v_into_normalised_k():
    """With the L2 norm, any large k becomes unit length (up to the 1e-6 epsilon)."""
    R, H, HV, K, V = 2, 1, 3, 5, 4
    rng = np.random.default_rng(23)
    qkv = rng.standard_normal((R, 2 * H * K + HV * V))
    qkv[:, H * K : 2 * H * K] *= 1e4
    a = np.zeros((R, HV))
    b = np.full((R, HV), 60.0)
    A_log = np.full(HV, -60.0)
    S = rng.standard_normal((R, HV, K, V))
    res = decode_rows(qkv, a, b, A_log, np.zeros(HV), S, H=H, scale=0.5)
    _, k, v = split_qkv(qkv, H, HV, K, V)
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    written = np.einsum("rhk,rhkv->rhv", k, res.state)
    np.testing.assert_allclose(written, v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", ["vk", "kv"])
def test_output_uses_updated_state(layout):
    inp = make_inputs(24, layout=layout)
    scale = 0.45
    out, state = run_oracle(inp, scale=scale)
    H, K, V = inp["H"], inp["K"], inp["V"]
    HV = state.shape[1]
    q, _, _ = split_qkv(inp["mixed_qkv"], H, HV, K, V)
    q = q / np.sqrt(np.sum(q * q, axis=-1, keepdims=True) + 1e-6) * scale
    idx = inp["state_indices"]
    new = oracle.to_kv(state[idx], layout)
    old = oracle.to_kv(inp["state"][idx], layout)
    g, _ = gates(inp["a"], inp["b"], inp["A_log"], inp["dt_bias"])
    old_decayed = old * np.exp(g)[..., None, None]
    from_new = np.einsum("rhk,rhkv->rhv", q, new)
    from_old = np.einsum("rhk,rhkv->rhv", q, old_decayed)
    assert_f64_close(out, from_new)
    assert np.max(np.abs(out - from_old)) > 1e-2


# --------------------------------------------------------------------------
# (3) magnitudes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("l2", [True, False])
def test_magnitudes_bound_values(seed, l2):
    qkv, a, b, A_log, dt_bias, S, H = _rows_inputs(100 + seed, R=4, H=2, HV=6, K=7, V=5)
    res = decode_rows(
        qkv, a, b, A_log, dt_bias, S, H=H, scale=0.3, use_qk_l2norm=l2, with_magnitude=True
    )
    plain = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=0.3, use_qk_l2norm=l2)
    assert res.out_mag is not None and res.state_mag is not None
    assert res.out_mag.shape == res.out.shape and res.state_mag.shape == res.state.shape
    assert np.all(res.out_mag >= np.abs(res.out))
    assert np.all(res.state_mag >= np.abs(res.state))
    # Cancellation is present in these inputs: magnitude strictly exceeds |value| somewhere.
    assert np.any(res.out_mag > 1.5 * np.abs(res.out))
    # with_magnitude changes nothing else.
    np.testing.assert_array_equal(res.out, plain.out)
    np.testing.assert_array_equal(res.state, plain.state)
    assert plain.out_mag is None and plain.state_mag is None


@pytest.mark.parametrize("seed", range(40))
def test_an_infinite_state_gives_the_nan_and_inf_of_q_times_the_new_state(seed):
    """A state that overflowed to Inf a step earlier: the output is what
    ``q @ S_new`` gives, NaN where that product adds Inf to -Inf, whatever
    order the oracle sums in, and so is its magnitude."""
    qkv, a, b, A_log, dt_bias, S, H = _rows_inputs(300 + seed, R=2, H=1, HV=2, K=6, V=5)
    rng = np.random.default_rng(seed)
    for _ in range(1 + seed % 3):
        S[tuple(rng.integers(0, n) for n in S.shape)] = rng.choice([np.inf, -np.inf])
    res = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=0.4, with_magnitude=True)
    q = split_qkv(qkv, H, 2, 6, 5)[0]
    q = q / np.sqrt(np.sum(q * q, axis=-1, keepdims=True) + oracle.L2_EPS) * 0.4
    with np.errstate(invalid="ignore"):
        literal = np.einsum("rhk,rhkv->rhv", q, res.state)
        literal_mag = np.einsum("rhk,rhkv->rhv", np.abs(q), res.state_mag)
    assert not np.isfinite(literal).all()
    for got, want in ((res.out, literal), (res.out_mag, literal_mag)):
        bad = ~np.isfinite(want)
        np.testing.assert_array_equal(got[bad], want[bad])
        np.testing.assert_array_equal(np.isfinite(got), ~bad)


# --------------------------------------------------------------------------
# (4) chunking
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["vk", "kv"])
@pytest.mark.parametrize("chunk_bytes", [1, 6 * 4 * 6 * 5 * 8 * 3])
def test_chunking_bit_identical(layout, chunk_bytes):
    inp = make_inputs(30, B=9, N=12, layout=layout, indices=[4, -1, 0, 7, 2, -1, 10, 1, 5])
    big_out, big_state = run_oracle(inp, chunk_bytes=1 << 40)
    small_out, small_state = run_oracle(inp, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(small_out, big_out)
    np.testing.assert_array_equal(small_state, big_state)
    assert_f64_close(big_out, run_naive(inp)[0])


# --------------------------------------------------------------------------
# (5) independence
# --------------------------------------------------------------------------


def test_reference_imports_neither_torch_nor_kernels():
    code = (
        "import sys; import reference; import reference.oracle; "
        "bad = [m for m in ('torch', 'kernels', 'triton') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
