"""Baseline honesty: the unfused baseline's recurrent kernel alone, against FLA's.

A speedup over the baseline means something only if the baseline is no
strawman, so its recurrent kernel (``kernels.baseline.baseline_recurrent``)
is timed against FLA's ``fused_recurrent_gated_delta_rule`` on the same
pre-split inputs: what the baseline's own first two stages make of each
input set (contiguous q, k, v cut from its ``mixed_qkv`` rows; fp32 ``g``
and ``beta`` from ``baseline_gates``). FLA is called through the harness's
FLA adapter (``harness.impls.adapters.fla.recurrent``), the one place that
maps a state layout onto FLA's call. The input sets are the main table's
(``inputsets.py``) with the identity slot order, so set ``i``'s states are
one dense ``[B, HV, ., .]`` block, which both kernels read by batch row.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from harness.bench.config import BenchConfig, Shape
from harness.bench.inputsets import InputSets, case_sets
from harness.bench.rows import Agreement, CaseRow, RecurrentRow, RecurrentSection
from harness.bench.targets import evaluate_recurrent
from harness.bench.timing import release, sync, time_calls
from kernels.baseline import baseline_gates, baseline_recurrent

FLA_ADAPTER = "harness.impls.adapters.fla"
# FLA vs baseline_recurrent on the same inputs, max |diff| / max |value|: out is bf16
# (a rounding flip is 2**-8 of an element), the state fp32 (summation order only).
AGREE_OUT_REL, AGREE_STATE_REL = 2e-2, 1e-4
FLA_STATE_NOTE = (
    "FLA reads a dense initial_state [B, HV, ...] by batch row and writes final_state to "
    "a new buffer (fla-core 0.6.0 has no state-index argument); baseline_recurrent gets the "
    "same dense per-set states with identity int32 indices and updates them in place: the "
    "same bytes either way"
)


def load_fla() -> tuple[ModuleType | None, str]:
    """The harness's FLA adapter, or None and why."""
    try:
        # Imported when the section runs: fla-core is optional, and without it the
        # adapter raises ImportError; the section then records why and times the
        # baseline alone.
        adapter = importlib.import_module(FLA_ADAPTER)
    except Exception as exc:
        return None, f"fla not installed ({type(exc).__name__}: {exc})"
    return adapter, f"fla-core {adapter.FLA_VERSION}"


def new_section() -> tuple[ModuleType | None, RecurrentSection]:
    """The adapter (or None) and the section's header, rows to come."""
    fla, desc = load_fla()
    section = RecurrentSection(fla=desc, note=FLA_STATE_NOTE)
    if fla is not None:
        section.fla_has_state_indices = bool(fla.FEATURES.get("state_indices"))
    return fla, section


@dataclass
class SplitSet:
    """One input set as the recurrent stage takes it (shapes as ``baseline_recurrent``'s)."""

    q: torch.Tensor  # [B, H, K]
    k: torch.Tensor  # [B, H, K]
    v: torch.Tensor  # [B, HV, V]
    g: torch.Tensor  # [B, HV] fp32, log-space decay
    beta: torch.Tensor  # [B, HV] fp32, after the sigmoid
    state: torch.Tensor  # [B, HV, ., .]: the set's slots, dense in row order
    out: torch.Tensor  # [B, HV, V]


def split_sets(sets: InputSets) -> list[SplitSet]:
    """Each set through the baseline's split and gating stages (its state block
    is dense only with the identity slot order, which the caller asks for)."""
    s, B = sets.spec, sets.B
    HK = s.H * s.K
    split = []
    for i in range(sets.count):
        qkv, a, b, A_log, dt_bias, pool, _, out = sets.args(i)
        g, beta = baseline_gates(a, b, A_log, dt_bias)
        q = qkv[:, :HK].reshape(B, s.H, s.K).contiguous()
        k = qkv[:, HK : 2 * HK].reshape(B, s.H, s.K).contiguous()
        v = qkv[:, 2 * HK :].reshape(B, s.HV, s.V).contiguous()
        split.append(SplitSet(q, k, v, g, beta, pool[sets.rows(i)], out))
    return split


def bench_recurrent_case(
    cfg: BenchConfig,
    fla: ModuleType | None,
    shape: Shape,
    layout: str,
    B: int,
    device: torch.device,
) -> RecurrentRow:
    """baseline_recurrent vs FLA's fused_recurrent_gated_delta_rule on the same pre-split inputs."""
    sets = case_sets(cfg, shape, layout, B, device, seed=cfg.seed + 7 * B + 1,
                     slot_order="identity")  # fmt: skip
    split = split_sets(sets)
    idx = torch.arange(B, dtype=torch.int32, device=device)
    scale, l2norm = sets.spec.effective_scale, sets.spec.use_qk_l2norm

    def base_call(s: SplitSet) -> None:
        baseline_recurrent(s.q, s.k, s.v, s.g, s.beta, s.state, idx, s.out, scale=scale,
                           use_qk_l2norm=l2norm, state_layout=layout)  # fmt: skip

    def fla_call(s: SplitSet) -> tuple[torch.Tensor, torch.Tensor]:
        t1 = [x.unsqueeze(1) for x in (s.q, s.k, s.v, s.g, s.beta)]  # T = 1
        return fla.recurrent(*t1, s.state, state_layout=layout, scale=scale,
                             use_qk_l2norm_in_kernel=l2norm)  # fmt: skip

    row = RecurrentRow(**CaseRow.case(shape, layout, B), input_sets=sets.count)
    if fla is not None:
        _agreement(row, split[0], base_call, fla_call, device)
    row.baseline_us, row.baseline_error = _time(base_call, split, device, cfg.replays)
    if fla is not None and row.fla_error is None:
        row.fla_us, row.fla_error = _time(fla_call, split, device, cfg.replays)
    if row.baseline_us and row.fla_us:
        row.ratio = row.baseline_us / row.fla_us
    row.target = evaluate_recurrent(row)
    del sets, split
    release(device)
    return row


def _agreement(row: RecurrentRow, s0: SplitSet, base_call, fla_call, device) -> None:
    """Both kernels on set 0 from the same state: a sanity check that they run the same math."""
    try:
        o_fla, ht = fla_call(s0)
        saved = s0.state.clone()
        base_call(s0)
        sync(device)
        diff = Agreement(_rel_diff(o_fla.squeeze(1), s0.out), _rel_diff(ht, s0.state))
        row.fla_vs_baseline = diff
        row.agree = diff.out_max_rel <= AGREE_OUT_REL and diff.state_max_rel <= AGREE_STATE_REL
        s0.state.copy_(saved)
    except Exception as exc:
        row.fla_error = f"{type(exc).__name__}: {exc}"


def _time(
    call: Callable[[SplitSet], Any], split: Sequence[SplitSet], device: torch.device, replays: int
) -> tuple[float | None, str | None]:
    """Microseconds per call over every set, or why the timing failed."""
    calls = [functools.partial(call, s) for s in split]
    try:
        return time_calls(calls, device, replays, use_graph=device.type == "cuda").median_us, None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _rel_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """max |x - y| / max |y| (in fp64 on the device's own tensors)."""
    x, y = x.double(), y.double()
    scale = float(y.abs().max().item()) or 1.0
    return float((x - y).abs().max().item()) / scale
