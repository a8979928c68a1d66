"""The targets the packed kernel is held to, and their verdicts on measured rows.

Stated for the packed kernel on Qwen3-Next shapes (H/HV 16/32 and 4/8, K = V
= 128, bf16 activations, fp32 state): a share of the byte floor at large
batches, a speedup over the unfused baseline, a B = 1 latency; and, for the
baseline's honesty, its recurrent kernel within 10% of FLA's. A row that
was not timed misses every target that applies to it.

Against the field's kernels: where a run has a ``vllm`` row, the packed
kernel must be at least as fast as vLLM's packed kernel on that case, at
every B of the default grid in layout vk (vLLM's only layout), 16/32 and
4/8. Each case's verdict sits on the packed row with the time ratio; the
claim over the whole grid is ``peer_verdicts``. A vllm row that was not
timed (its check failed) leaves the case unproven: a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.bench.config import DEFAULT_BATCHES, parse_ints
from harness.bench.rows import MainRow, PeerVerdict, RecurrentRow, TargetResult, TargetTally

TARGET_SHAPES = {(16, 32), (4, 8)}
RECURRENT_MAX_RATIO = 1.10  # baseline_recurrent within 10% of FLA's kernel
PEER_TARGETS = ("vllm",)  # packed at least as fast as each of these ...
PEER_LAYOUT = "vk"  # ... in this layout ...
PEER_BATCHES = tuple(parse_ints(DEFAULT_BATCHES))  # ... at every B of the default grid


def targets_apply(row: MainRow) -> bool:
    """Targets are stated for the packed kernel on Qwen3-Next shapes, bf16/fp32, K=V=128."""
    return (
        row.impl == "packed"
        and (row.H, row.HV) in TARGET_SHAPES
        and (row.K, row.V) == (128, 128)
        and row.act_dtype == "bf16"
        and row.state_dtype == "fp32"
    )


def evaluate_targets(row: MainRow, case_rows: Sequence[MainRow] = ()) -> list[TargetResult]:
    """The issue's targets that apply to one result row, each PASS or MISS.

    ``case_rows`` are the rows of the same case (other implementations):
    the peers of ``PEER_TARGETS`` among them add their targets. A row that
    was not timed (check failed, crash, skipped) misses every target that
    applies to it: an untimed kernel has not met anything.
    """
    if not targets_apply(row):
        return []
    peers = [p for p in case_rows if p.impl in PEER_TARGETS and peer_target_applies(row)]
    return _own_targets(row) + [peer_target(row, p) for p in peers]


def _own_targets(row: MainRow) -> list[TargetResult]:
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


def peer_target_applies(row: MainRow) -> bool:
    """The peer targets hold for the packed kernel's rows on the grid they are stated for."""
    return targets_apply(row) and row.layout == PEER_LAYOUT and row.B in PEER_BATCHES


def peer_target(row: MainRow, peer: MainRow) -> TargetResult:
    """Packed (``row``) at least as fast as ``peer`` on one case; ``value`` is
    the time ratio packed / peer."""
    name = peer_target_name(peer.impl)
    if row.time_us is None:
        return TargetResult(name, False, f"{name}: not measured")
    if peer.time_us is None:
        why = f"{peer.status}: {peer.detail}" if peer.detail else peer.status
        return TargetResult(name, False, f"{name}: {peer.impl} not timed ({why})")
    ratio = row.time_us / peer.time_us
    times = f"{row.time_us:.2f} vs {peer.time_us:.2f} us"
    detail = f"{name}: packed/{peer.impl} time {ratio:.3f} ({times})"
    return TargetResult(name, ratio <= 1.0, detail, value=ratio)


def peer_target_name(peer: str) -> str:
    return f"at least as fast as {peer}"


def case_label(row: MainRow) -> str:
    return f"{row.shape} {row.layout} B={row.B}"


def grid_shapes() -> list[str]:
    """The shapes the targets are stated for, as labels: 16/32, 4/8."""
    return [f"{h}/{hv}" for h, hv in sorted(TARGET_SHAPES, reverse=True)]


def peer_verdicts(rows: Sequence[MainRow]) -> list[PeerVerdict]:
    """For each peer of ``PEER_TARGETS`` with a row in the run: is packed at
    least as fast at every B of the default grid (vk, 16/32 and 4/8)?

    ``met`` is False when a case missed, None when the run did not cover the
    whole grid (what it covered is still judged), True otherwise.
    """
    grid = [f"{shape} {PEER_LAYOUT} B={B}" for shape in grid_shapes() for B in PEER_BATCHES]
    verdicts = []
    for peer in (p for p in PEER_TARGETS if any(r.impl == p for r in rows)):
        name = peer_target_name(peer)
        packed = [r for r in rows if r.impl == "packed"]
        judged = {case_label(r): t for r in packed for t in r.targets if t.name == name}
        cut = len(name) + 2  # "<name>: " opens every detail
        missed = [f"{k}: {t.detail[cut:]}" for k, t in judged.items() if not t.ok]
        not_run = [k for k in grid if k not in judged]
        ratios = [(t.value, k) for k, t in judged.items() if t.value is not None]
        worst = max(ratios, key=lambda r: r[0], default=(None, None))  # the first of equals
        verdicts.append(
            PeerVerdict(
                peer=peer,
                claim=f"packed at least as fast as {peer} at every B of the default grid "
                f"({PEER_LAYOUT}; {' and '.join(grid_shapes())})",
                met=False if missed else (None if not_run else True),
                compared=len(judged),
                grid=len(grid),
                missed=missed,
                not_run=not_run,
                worst_ratio=worst[0],
                worst_case=worst[1],
            )
        )
    return verdicts


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
