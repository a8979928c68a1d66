"""Value ranges: every input finite in its dtype, every oracle value finite.

A case whose inputs are drawn past the largest value of their dtype runs on
``inf`` (a ``gate_mean`` of 1e308 is ``inf`` in bf16), and one whose exact
values pass 1e300 can overflow the float64 oracle: either way the checks
compare noise and blame the kernels. Both are refused at load time, from
bounds on the drawn values (``SIGMAS`` standard deviations: no draw of a
case gets near it) and, for the oracle, from a bound on how the state can
grow over the steps.

Growth: each step is ``S' = e^g S + beta k (v - k^T e^g S)`` with ``g <= 0``
and ``0 <= beta <= 1``, so per head ``|S'| <= |S| * max(1, |k|^2 - 1) +
|k| |v|`` (Frobenius norms). With the L2 norm ``|k| <= 1`` and the state
grows at most linearly; without it, by up to ``|k|^2`` a step.
"""

from __future__ import annotations

import math

from harness.core.dtypes import dtype
from harness.core.spec import CaseSpec

SIGMAS = 8.0  # a normal draw beyond 8 standard deviations has probability 1e-15
ORACLE_LIMIT = 1e300  # float64 overflows at 1.8e308: keep the oracle well inside
EXP_LIMIT = math.log(2.0**128)  # exp(A_log) in fp32, where the kernels compute it

Rule = tuple[str | None, str]


def largest(name: str) -> float:
    """The largest finite value of a float dtype of the table."""
    row = dtype(name)
    return (2.0 - 2.0**-row.mant_bits) * 2.0**row.max_exp


def _param_dtype(spec: CaseSpec) -> str:
    return spec.act_dtype if spec.param_dtype == "act" else spec.param_dtype


def _draw_bounds(spec: CaseSpec) -> list[tuple[str, float, str, str]]:
    """(field, largest magnitude drawn, dtype it is stored in, what it is)."""
    v, act, param = spec.values, spec.act_dtype, _param_dtype(spec)
    gate = "values.gate_mean" if abs(v.gate_mean) >= SIGMAS * v.gate_std else "values.gate_std"
    bounds = [
        (gate, abs(v.gate_mean) + SIGMAS * v.gate_std, act, "a ~ N(gate_mean, gate_std)"),
        ("values.qkv_std", SIGMAS * v.qkv_std, act, "q, k, v ~ N(0, qkv_std)"),
        ("values.beta_std", SIGMAS * v.beta_std, act, "b ~ N(0, beta_std)"),
        ("values.dt_bias_std", SIGMAS * v.dt_bias_std, param, "dt_bias ~ N(0, dt_bias_std)"),
        ("values.a_log_lo", abs(v.a_log_lo), param, "A_log"),
        ("values.a_log_hi", abs(v.a_log_hi), param, "A_log"),
        ("values.state_std", SIGMAS * v.state_std, spec.state_dtype, "the state ~ N(0, state_std)"),
    ]
    if v.tiny_qk:
        bounds.append(("values.tiny_qk_norm", 2 * v.tiny_qk_norm, act, "q and k"))
    if spec.scale is not None:
        bounds.append(("scale", abs(spec.scale), "fp32", "the scale"))
    return bounds


def magnitude_problem(spec: CaseSpec) -> Rule | None:
    """The first input that would not be finite, or an oracle that could overflow."""
    for field, value, name, what in _draw_bounds(spec):
        if value > largest(name):
            return field, (
                f"{what} reaches {value:.3g}, past the largest {name} ({largest(name):.3g}): "
                "the inputs would be inf"
            )
    if spec.values.a_log_hi > EXP_LIMIT:
        return "values.a_log_hi", (
            f"exp(A_log) overflows fp32 above {EXP_LIMIT:.4g} (got {spec.values.a_log_hi:g})"
        )
    return _oracle_problem(spec)


def _oracle_problem(spec: CaseSpec) -> Rule | None:
    bound = oracle_log10_bound(spec, spec.steps)
    if bound < math.log10(ORACLE_LIMIT):
        return None
    one_step = spec.steps > 1 and oracle_log10_bound(spec, 1) < math.log10(ORACLE_LIMIT)
    return "steps" if one_step else None, (
        f"the exact values could reach 1e{bound:.0f}, past the float64 oracle's range "
        "(fewer steps, use_qk_l2norm, or smaller qkv_std/state_std)"
    )


def oracle_log10_bound(spec: CaseSpec, steps: int) -> float:
    """log10 of a bound on every value the oracle computes over ``steps`` steps."""
    v, K, V = spec.values, spec.K, spec.V
    elem = SIGMAS * v.qkv_std
    qk = 2 * v.tiny_qk_norm if v.tiny_qk else elem * math.sqrt(K)  # |q|, |k| per head
    if spec.use_qk_l2norm:
        qk = min(qk, 1.0)
    growth = max(1.0, qk * qk - 1.0)
    state = SIGMAS * v.state_std * math.sqrt(K * V) + steps * qk * elem * math.sqrt(V)
    log_state = steps * math.log10(growth) + math.log10(max(state, 1e-300))
    return log_state + math.log10(max(qk * abs(spec.effective_scale), 1.0))
