"""Input sets: the arguments of the calls that one timing rotates over.

Each of the ``R`` calls in a timed graph uses its own activations, output
buffer and region of the state pool, and ``R`` is chosen so that the rotated
working set is several times the L2 size (``floor.py``); a replayed call
therefore finds nothing of its own in L2, as in a model where the other
layers run in between.

The sets are built by the harness's own input builder (``harness.inputs``),
as ONE case of ``R * B`` rows and ``R * B`` slots: set ``i`` is its rows
``[i*B, (i+1)*B)``, and those rows name the slots ``[i*B, (i+1)*B)``, in
the order the harness gives a case of ``B`` rows in a pool of ``B`` slots
(``permuted``: its seeded permutation, with a seed of its own per set;
``identity``: row ``n`` in slot ``n``), moved to the set's region. One case,
not ``R``, because the calls share one state pool as a layer's calls do in
serving. The values, the slot logic and the layouts are the harness's: every
row live, ``mixed_qkv`` dense, ``a`` and ``b`` views of one packed buffer,
A_log and dt_bias fp32, int32 indices; the guards around each buffer cost
the timed calls nothing, and the check reads exactly these values.

When an implementation in the run treats slot 0 as the null block (``pad:
nonpositive``, ``harness.core.conventions``), no live row may name it: the
row that would have had slot 0 gets a slot added at the end of the pool
(``harness.inputs.for_null_slot``), and every implementation of the run is
timed on those same sets. With every row live there are no padding rows to
spell, so the indices are the same under either padding convention.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from harness.bench.config import BenchConfig, Shape
from harness.bench.floor import auto_input_sets, set_footprint
from harness.bench.timing import l2_bytes
from harness.core.dtypes import nbytes
from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec
from harness.inputs import CaseInputs, build_inputs, for_null_slot, slot_indices

SET_MEMORY_FRACTION = 0.4  # of free device memory, for all input sets of one case
PAD_FREE_NOTE = "every row live (no padding)"
NULL_SLOT_NOTE = "slot 0 named by no row (an implementation has the null block)"


def bench_spec(
    shape: Shape,
    B: int,
    layout: str,
    act_dtype: str,
    state_dtype: str,
    *,
    seed: int = 0,
    slot_order: str = "permuted",
    tier: str = "gpu",
) -> CaseSpec:
    """One input set as a harness case: what implementations' ``unsupported``
    hooks and the correctness check see."""
    return CaseSpec(
        file="bench",
        name=f"{shape.label}-{layout}-B{B}",
        line=0,
        B=B,
        H=shape.H,
        HV=shape.HV,
        K=shape.K,
        V=shape.V,
        pool=B,
        act_dtype=act_dtype,
        state_dtype=state_dtype,
        layout=LayoutSpec(state_layout=layout, ab_packed=True),
        slots=SlotSpec(order="identity" if slot_order == "identity" else "permutation"),
        seed=seed,
        tier=tier,
    )


def rotation_spec(one: CaseSpec, count: int) -> CaseSpec:
    """``count`` sets of ``one`` as one case: set ``i`` is rows ``[i*B, (i+1)*B)``
    and names slots ``[i*B, (i+1)*B)``, in the order the harness gives ``one``
    with the seed ``one.seed + i``."""
    B = one.B
    indices = [
        i * B + s for i in range(count) for s in slot_indices(replace(one, seed=one.seed + i))
    ]
    return replace(one, B=count * B, pool=count * B, slots=SlotSpec(indices=tuple(indices)))


@dataclass
class InputSets:
    """The input sets of one bench case, cut from the inputs the harness built for all."""

    spec: CaseSpec  # one set, as a harness case
    inputs: CaseInputs  # every set: rows and slots [i*B, (i+1)*B) are set i's
    count: int
    null_slot: bool = False  # no row names slot 0 (set 0's slot-0 row moved to the end)

    @property
    def B(self) -> int:
        return self.spec.B

    @property
    def pool(self) -> torch.Tensor:
        """The state pool every set's rows name their slots in."""
        return self.inputs.state

    def rows(self, i: int) -> slice:
        return slice(i * self.B, (i + 1) * self.B)

    def args(self, i: int) -> tuple[torch.Tensor, ...]:
        """Set ``i``'s eight arguments in contract order: its rows of mixed_qkv, a,
        b, state_indices and out; A_log, dt_bias and the pool, which sets share."""
        r, x = self.rows(i), self.inputs
        return (
            x.mixed_qkv[r],
            x.a[r],
            x.b[r],
            x.A_log,
            x.dt_bias,
            x.state,
            self.indices(i),
            self.out(i),
        )

    def indices(self, i: int) -> torch.Tensor:
        """Set ``i``'s ``state_indices``: its slots, in its rows' order."""
        return self.inputs.state_indices[self.rows(i)]

    def out(self, i: int) -> torch.Tensor:
        """Set ``i``'s output rows."""
        return self.inputs.out[self.rows(i)]

    def kwargs(self) -> dict[str, Any]:
        return self.inputs.kwargs()

    def calls(self, fn: Callable[..., Any]) -> list[Callable[[], Any]]:
        """One call of ``fn`` per set, each on its own set (what ``time_calls`` times)."""
        kwargs = self.kwargs()
        return [functools.partial(fn, *self.args(i), **kwargs) for i in range(self.count)]


def build_sets(
    shape: Shape,
    B: int,
    layout: str,
    count: int,
    act_dtype: str,
    state_dtype: str,
    device: torch.device,
    *,
    seed: int = 0,
    slot_order: str = "permuted",
    null_slot: bool = False,
) -> InputSets:
    """``count`` input sets of ``B`` rows on ``device`` (see the module's docstring);
    with ``null_slot``, no row names slot 0."""
    tier = "gpu" if device.type == "cuda" else "cpu"
    one = bench_spec(
        shape, B, layout, act_dtype, state_dtype, seed=seed, slot_order=slot_order, tier=tier
    )
    every = rotation_spec(one, count)
    if null_slot:
        every = for_null_slot(every)
    return InputSets(one, build_inputs(every, device), count, null_slot)


def _mem_budget(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * SET_MEMORY_FRACTION)


def case_sets(
    cfg: BenchConfig,
    shape: Shape,
    layout: str,
    B: int,
    device: torch.device,
    *,
    seed: int,
    slot_order: str,
    null_slot: bool = False,
) -> InputSets:
    """A run's input sets for one case: ``--input-sets`` of them, or enough that
    the rotation exceeds the L2 within the memory budget (``null_slot``: see
    :func:`build_sets`)."""
    count = cfg.input_sets
    if count is None:
        per_set = set_footprint(B, shape, nbytes(cfg.act_dtype), nbytes(cfg.state_dtype))
        count = auto_input_sets(per_set, l2_bytes(device), _mem_budget(device))
    return build_sets(shape, B, layout, count, cfg.act_dtype, cfg.state_dtype, device,
                      seed=seed, slot_order=slot_order, null_slot=null_slot)  # fmt: skip


def probe_case(shape: Shape, B: int, layout: str, device: torch.device, seed: int = 1) -> InputSets:
    """One case's input sets, bf16 activations and fp32 state, as many as the bench
    rotates: for the scripts under benchmarks/ that time pieces of a step their way."""
    per_set = set_footprint(B, shape, nbytes("bf16"), nbytes("fp32"))
    count = auto_input_sets(per_set, l2_bytes(device))
    return build_sets(shape, B, layout, count, "bf16", "fp32", device, seed=seed)
