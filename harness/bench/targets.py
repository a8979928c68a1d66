"""The targets the packed kernel is held to, and their verdicts on measured rows.

Stated for the packed kernel on Qwen3-Next shapes (H/HV 16/32 and 4/8, K = V
= 128, bf16 activations, fp32 state): a share of the byte floor at large
batches, a speedup over the unfused baseline, a B = 1 latency; and, for the
baseline's honesty, its recurrent kernel within 10% of FLA's. A row that
was not timed misses every target that applies to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.bench.rows import MainRow, RecurrentRow, TargetResult, TargetTally

TARGET_SHAPES = {(16, 32), (4, 8)}
RECURRENT_MAX_RATIO = 1.10  # baseline_recurrent within 10% of FLA's kernel


def targets_apply(row: MainRow) -> bool:
    """Targets are stated for the packed kernel on Qwen3-Next shapes, bf16/fp32, K=V=128."""
    return (
        row.impl == "packed"
        and (row.H, row.HV) in TARGET_SHAPES
        and (row.K, row.V) == (128, 128)
        and row.act_dtype == "bf16"
        and row.state_dtype == "fp32"
    )


def evaluate_targets(row: MainRow) -> list[TargetResult]:
    """The issue's targets that apply to one result row, each PASS or MISS.

    A row that was not timed (check failed, crash, skipped) misses every
    target that applies to it: an untimed kernel has not met anything.
    """
    if not targets_apply(row):
        return []
    B, layout = row.B, row.layout
    t, pct, speedup = row.time_us, row.pct_floor, row.speedup
    checks: list[tuple[str, float | None, float, bool]] = []  # name, value, bound, higher_ok
    if layout == "vk" and B >= 256:
        checks.append(("vk >= 97% of floor (B >= 256)", pct, 97.0, True))
    if layout == "vk" and B == 64:
        checks.append(("vk >= 93% of floor (B = 64)", pct, 93.0, True))
    if layout == "kv" and B >= 256:
        checks.append(("kv >= 90% of floor (B >= 256)", pct, 90.0, True))
    checks.append(("faster than baseline", speedup, 1.0, True))
    if B <= 64:
        checks.append((">= 1.3x baseline (B <= 64)", speedup, 1.3, True))
    if B == 1:
        checks.append(("B = 1 within 2.5 us", t, 2.5, False))
    results = []
    for name, value, bound, higher in checks:
        if value is None:
            results.append(TargetResult(name, False, f"{name}: not measured"))
            continue
        if name == "faster than baseline":
            ok = value > bound
        else:
            ok = value >= bound if higher else value <= bound
        results.append(TargetResult(name, ok, f"{name}: {_shown(value, bound)} vs {bound:g}"))
    return results


def _shown(value: float, bound: float) -> str:
    """``value`` in three significant digits, or more where three would print it
    equal to ``bound`` (a speedup of 1.297 must not read "1.3 vs 1.3")."""
    for digits in range(3, 8):
        text = f"{value:.{digits}g}"
        if value == bound or float(text) != bound:
            return text
    return repr(value)


def evaluate_recurrent(row: RecurrentRow) -> TargetResult | None:
    """baseline_recurrent must be within 10% of FLA's recurrent kernel (None: no FLA time).

    A timing comparison between kernels that computed different things proves
    nothing, so a row where the two disagree on set 0 misses too.
    """
    base, fla = row.baseline_us, row.fla_us
    if base is None or fla is None:
        return None
    ratio = base / fla
    name = f"baseline_recurrent <= {RECURRENT_MAX_RATIO:g}x FLA"
    if row.agree is False:
        return TargetResult(name, False, f"{name}: {ratio:.3f}, but the results disagree")
    return TargetResult(name, ratio <= RECURRENT_MAX_RATIO, f"{name}: {ratio:.3f}")


def target_cell(results: Sequence[TargetResult]) -> str:
    """Console/markdown cell: '-' (none apply), 'PASS', or 'MISS: <names>'."""
    if not results:
        return "-"
    missed = [r.name for r in results if not r.ok]
    return "PASS" if not missed else "MISS: " + "; ".join(missed)


def target_summary(rows: Sequence[MainRow], recurrent: Sequence[RecurrentRow]) -> TargetTally:
    """Evaluated, passed and a line per miss, over the main rows and the recurrent rows."""
    tally = TargetTally(0, 0, [])
    named = [(r, r.impl, t) for r in rows for t in r.targets]
    named += [(r, "recurrent", r.target) for r in recurrent if r.target is not None]
    for r, who, t in named:
        tally.evaluated += 1
        tally.passed += t.ok
        if not t.ok:
            tally.missed.append(f"{r.shape} {r.layout} B={r.B} {who}: {t.detail}")
    return tally
