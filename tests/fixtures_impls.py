"""Plug-in implementations for tests/test_registry.py (resolved as ``fixtures_impls:NAME``)."""

from __future__ import annotations

from harness.impls.oracle import oracle_decode


def decode_via_oracle(
    mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, *, scale, **kw
) -> None:
    """A plug-in that delegates to the oracle wrapper."""
    oracle_decode(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, scale=scale, **kw)


def decode_zero(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw) -> None:
    """A wrong plug-in: writes zeros and leaves the state alone."""
    out.zero_()


def _kv_only(case) -> str | None:
    layout = getattr(getattr(case, "layout", None), "state_layout", None)
    return None if layout == "kv" else f"state layout {layout!r} not supported"


def decode_kv_only(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw) -> None:
    """A plug-in that declares which cases it cannot express."""
    decode_via_oracle(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw)


decode_kv_only.unsupported = _kv_only  # type: ignore[attr-defined]


class Namespace:
    """Nested attribute paths (``module:Namespace.fn``) resolve too."""

    fn = staticmethod(decode_zero)


NOT_CALLABLE = 42


EPS32 = 2.0**-23


def decode_out_rounded_20ulp(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """Correct, but each output a 20 fp32-epsilon relative error off: within the
    per-element bound (hundreds of epsilons of the magnitude), and many times
    an exactly rounding baseline's. Nothing carries over between steps."""
    decode_via_oracle(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw)
    out.mul_(1.0 + 20 * EPS32)


def decode_state_biased(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """Each step within the per-element bound (the named slots 10 fp32 epsilons
    high), but the bias builds up step after step in the carried state."""
    decode_via_oracle(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw)
    live = state_indices[state_indices >= 0].long()
    state[live] = state[live] * (1.0 + 10 * EPS32)
