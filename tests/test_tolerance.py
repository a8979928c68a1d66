"""Tests of the tolerance policy (harness/tolerance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.check import tolerance
from harness.check.tolerance import EPS32, FP32_TINY, ElementTol, resolve, ulp
from harness.core.spec import Tolerance
from reference.oracle import decode_rows

F64 = np.float64
TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def torch_spacing(values: np.ndarray, dtype: str) -> np.ndarray:
    """Distance to the next representable number away from zero, from the bit patterns."""
    t = torch.from_numpy(np.abs(values)).to(TORCH[dtype])
    int_t = torch.int16 if dtype in ("bf16", "fp16") else torch.int32
    nxt = (t.view(int_t) + 1).view(TORCH[dtype])
    return (nxt.to(torch.float64) - t.to(torch.float64)).numpy()


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    return torch.from_numpy(values).to(TORCH[dtype]).to(torch.float64).numpy()


# --------------------------------------------------------------------------
# ulp
# --------------------------------------------------------------------------


def test_ulp_fp32_matches_np_spacing():
    rng = np.random.default_rng(0)
    mags = np.ldexp(rng.uniform(1.0, 2.0, 4000), rng.integers(-150, 120, 4000))
    x32 = (mags * rng.choice([-1.0, 1.0], 4000)).astype(np.float32)
    specials = np.array(
        [
            0.0,
            1.0,
            2.0,
            0.5,
            2.0**-126,  # smallest normal
            2.0**-149,  # smallest subnormal
            3 * 2.0**-140,  # a subnormal
            2.0**-127,
            1e30,
        ],
        dtype=np.float32,
    )
    below_pow2 = np.nextafter(
        np.array([1.0, 2.0, 4.0, 2.0**-125, 2.0**-126, 2.0**100], np.float32), np.float32(0)
    )
    x32 = np.concatenate([x32, specials, -specials, below_pow2])
    got = ulp(x32.astype(F64), "fp32")
    want = np.abs(np.spacing(x32)).astype(F64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("dtype", "x", "spacing"),
    [
        ("bf16", 1.0, 2.0**-7),
        ("bf16", 1.0 - 2.0**-8, 2.0**-8),  # just below a power of two
        ("bf16", 256.0, 2.0),
        ("bf16", 255.0, 1.0),
        ("bf16", -3.0, 2.0**-6),
        ("bf16", 0.0, 2.0**-133),
        ("bf16", 2.0**-126, 2.0**-133),  # smallest normal
        ("bf16", 2.0**-130, 2.0**-133),  # subnormal
        ("bf16", 2.0**-133, 2.0**-133),  # smallest subnormal
        ("bf16", 1e38, 2.0**119),
        ("fp16", 1.0, 2.0**-10),
        ("fp16", 1.0 - 2.0**-11, 2.0**-11),
        ("fp16", 1024.0, 1.0),
        ("fp16", 1023.5, 0.5),
        ("fp16", 65504.0, 32.0),
        ("fp16", 2048.0, 2.0),
        ("fp16", 0.0, 2.0**-24),
        ("fp16", 2.0**-14, 2.0**-24),  # smallest normal
        ("fp16", 2.0**-15, 2.0**-24),  # subnormal
        ("fp16", 2.0**-24, 2.0**-24),
        ("fp16", -0.1, 2.0**-14),
        ("fp32", 0.0, 2.0**-149),
        ("fp32", 1.0, 2.0**-23),
        ("fp32", 1.0 - 2.0**-24, 2.0**-24),
    ],
)
def test_ulp_known_spacings(dtype, x, spacing):
    assert ulp(np.array([x]), dtype)[0] == spacing
    assert ulp(np.array([-x]), dtype)[0] == spacing


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_ulp_half_precision_matches_bit_patterns(dtype):
    rng = np.random.default_rng(1)
    lo = -140 if dtype == "bf16" else -26
    hi = 120 if dtype == "bf16" else 15
    mags = np.ldexp(rng.uniform(1.0, 2.0, 3000), rng.integers(lo, hi, 3000))
    x = round_to(mags * rng.choice([-1.0, 1.0], 3000), dtype)  # representable values
    x = x[np.isfinite(x) & (np.abs(x) < (60000.0 if dtype == "fp16" else 3e38))]
    assert x.size > 2500
    assert np.any(x == 0) or np.any(np.abs(x) < (2.0**-126 if dtype == "bf16" else 2.0**-14))
    np.testing.assert_array_equal(ulp(x, dtype), torch_spacing(x, dtype))


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_half_ulp_bounds_rounding_error(dtype):
    """Rounding to nearest in ``dtype`` moves a value by at most ulp/2 (the ulps term)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(5000) * np.exp(rng.uniform(-8, 8, 5000))
    err = np.abs(round_to(x, dtype) - x)
    assert np.all(err <= 0.5 * ulp(x, dtype))
    assert np.any(err > 0.25 * ulp(x, dtype))


# --------------------------------------------------------------------------
# resolve / ElementTol
# --------------------------------------------------------------------------


@pytest.mark.parametrize("K", [16, 128, 100])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_resolve_defaults(K, dtype):
    t = resolve(Tolerance(), dtype, K)
    assert t == ElementTol(dtype=dtype, ulps=1.0, fp32_ulps=2.0 * K + 256.0, drift_factor=4.0)
    assert t.ulps == tolerance.DEFAULT_ULPS
    assert t.drift_factor == tolerance.DEFAULT_DRIFT_FACTOR
    assert t.fp32_ulps == tolerance.default_fp32_ulps(K)


def test_resolve_overrides_each_field_independently():
    t = resolve(Tolerance(ulps=3.0), "bf16", 64)
    assert (t.ulps, t.fp32_ulps, t.drift_factor) == (3.0, 384.0, 4.0)
    t = resolve(Tolerance(fp32_ulps=10.0), "bf16", 64)
    assert (t.ulps, t.fp32_ulps, t.drift_factor) == (1.0, 10.0, 4.0)
    t = resolve(Tolerance(drift_factor=1.5), "fp16", 64)
    assert (t.ulps, t.fp32_ulps, t.drift_factor, t.dtype) == (1.0, 384.0, 1.5, "fp16")


def test_resolve_zero_override_is_honoured():
    """0 is an override, not 'unset'."""
    t = resolve(Tolerance(ulps=0.0, fp32_ulps=0.0, drift_factor=0.0), "fp32", 128)
    assert (t.ulps, t.fp32_ulps, t.drift_factor) == (0.0, 0.0, 0.0)
    b = t.bound(np.array([1.0, 0.0]), np.array([1.0, 5.0]))
    np.testing.assert_array_equal(b, [FP32_TINY, FP32_TINY])


def test_describe_mentions_the_numbers():
    text = resolve(Tolerance(ulps=2.0), "bf16", 128).describe()
    assert "bf16" in text and "2 ulp" in text and "512" in text and "4" in text


def test_bound_formula():
    t = ElementTol("fp16", ulps=2.0, fp32_ulps=100.0, drift_factor=4.0)
    ref = np.array([1.0, -3.0, 0.0])
    mag = np.array([2.0, 3.0, 0.0])
    want = 2.0 * ulp(ref, "fp16") + 100.0 * EPS32 * mag + FP32_TINY
    np.testing.assert_array_equal(t.bound(ref, mag), want)
    assert t.bound(ref, mag)[0] == 2.0 * 2.0**-10 + 200.0 * 2.0**-23 + 2.0**-126


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_bound_monotonic(dtype):
    t = resolve(Tolerance(), dtype, 128)
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(200) * 10.0
    mags = np.sort(np.concatenate([[0.0], np.exp(rng.uniform(-30, 10, 300))]))
    bounds = np.stack([t.bound(ref, np.full_like(ref, m)) for m in mags])
    assert np.all(np.diff(bounds, axis=0) >= 0)
    assert np.all(bounds[-1] > bounds[0])  # the magnitude term really contributes
    # Also monotonic in |ref| for a fixed magnitude.
    refs = np.sort(np.exp(rng.uniform(-100, 10, 500)))
    b = t.bound(refs, np.ones_like(refs))
    assert np.all(np.diff(b) >= 0)
    np.testing.assert_array_equal(b, t.bound(-refs, np.ones_like(refs)))
    assert np.all(t.bound(np.zeros(1), np.zeros(1)) > 0)


# --------------------------------------------------------------------------
# The policy catches a bf16 rounding and passes fp32 arithmetic
# --------------------------------------------------------------------------


def test_fp32_state_bound_rejects_bf16_rounding_accepts_fp32_rounding():
    t = resolve(Tolerance(), "fp32", 128)
    rng = np.random.default_rng(4)
    x = rng.standard_normal(20000) * np.exp(rng.uniform(-5, 5, 20000))
    mag = np.abs(x)
    bound = t.bound(x, mag)
    bf16_err = np.abs(round_to(x, "bf16") - x)
    fp32_err = np.abs(round_to(x, "fp32") - x)
    assert np.all(fp32_err <= bound)
    # A bf16 rounding costs up to 2**-9 relative; the bound is ~2**-14 relative.
    assert np.mean(bf16_err > bound) > 0.9
    # Even with magnitude 4x the value (some cancellation) most are still caught.
    assert np.mean(bf16_err > t.bound(x, 4 * mag)) > 0.75


def _fp32_decode(qkv, a, b, A_log, dt_bias, S, H, scale, bf16_decay=False):
    """A correct fp32 implementation (NumPy float32), optionally with a bf16 intermediate."""
    f = np.float32
    qkv, a, b, A_log, dt_bias, S = (t.astype(f) for t in (qkv, a, b, A_log, dt_bias, S))
    R, HV, K, V = S.shape
    group = HV // H
    q = np.repeat(qkv[:, : H * K].reshape(R, H, K), group, axis=1)
    k = np.repeat(qkv[:, H * K : 2 * H * K].reshape(R, H, K), group, axis=1)
    v = qkv[:, 2 * H * K :].reshape(R, HV, V)
    q = q / np.sqrt(np.sum(q * q, axis=-1, keepdims=True) + f(1e-6))
    k = k / np.sqrt(np.sum(k * k, axis=-1, keepdims=True) + f(1e-6))
    q = q * f(scale)
    x = a + dt_bias[None]
    sp = np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, f(20)))))
    g = -np.exp(A_log)[None] * sp
    beta = f(1) / (f(1) + np.exp(-b))
    S = S * np.exp(g)[..., None, None]
    if bf16_decay:
        S = round_to(S.astype(F64), "bf16").astype(f)
    u = (v - np.einsum("rhk,rhkv->rhv", k, S)) * beta[..., None]
    S = S + k[..., :, None] * u[..., None, :]
    out = np.einsum("rhk,rhkv->rhv", q, S)
    return out.astype(F64), S.astype(F64)


def test_policy_on_fp32_arithmetic_vs_bf16_intermediate():
    R, H, HV, K, V = 3, 2, 4, 128, 128
    rng = np.random.default_rng(5)
    args = (
        rng.standard_normal((R, 2 * H * K + HV * V)).astype(np.float32).astype(F64),
        rng.standard_normal((R, HV)).astype(np.float32).astype(F64),
        rng.standard_normal((R, HV)).astype(np.float32).astype(F64),
        rng.uniform(-1, 1, HV).astype(np.float32).astype(F64),
        rng.standard_normal(HV).astype(np.float32).astype(F64),
        rng.standard_normal((R, HV, K, V)).astype(np.float32).astype(F64),
    )
    scale = K**-0.5
    ref = decode_rows(*args, H=H, scale=scale, with_magnitude=True)
    t = resolve(Tolerance(), "fp32", K)
    out, state = _fp32_decode(*args, H, scale)
    assert np.all(np.abs(out - ref.out) <= t.bound(ref.out, ref.out_mag))
    assert np.all(np.abs(state - ref.state) <= t.bound(ref.state, ref.state_mag))
    # And the fp32 computation is not trivially exact (the test is not vacuous).
    assert np.any(state != ref.state)
    out_b, state_b = _fp32_decode(*args, H, scale, bf16_decay=True)
    assert np.mean(np.abs(state_b - ref.state) > t.bound(ref.state, ref.state_mag)) > 0.5
    assert np.mean(np.abs(out_b - ref.out) > t.bound(ref.out, ref.out_mag)) > 0.3
