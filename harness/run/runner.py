"""Run one case: every implementation on its own copy of the same inputs,
the oracle on the stored values, and every check of docs/design.md.

Per step, each implementation is checked element by element against the
oracle re-run from that implementation's own previous state, so the
per-element bound stays valid however many steps run; multi-step cases also
carry the exact float64 trajectory and report each implementation's drift
from it, checked against the baseline's own drift.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from harness import inputs as inp_mod
from harness.check.compare import DriftStats, ErrorStats, max_abs, rel_rms, saturate_overflow
from harness.check.device import device_for_size, resolve_check_device
from harness.check.pool import check_blocks, host_array
from harness.check.step import Block, StepContext, merge_into, row_run
from harness.check.tolerance import ElementTol, resolve
from harness.core.conventions import UNWRITTEN, plan_slots, render_indices
from harness.core.host import to_host, to_host_rows
from harness.core.layouts import KV
from harness.core.spec import CaseSpec
from harness.core.tiers import tier_unrunnable
from harness.impls.registry import Implementation
from harness.run.result import CRASHED, FAILED, SKIPPED, CaseResult, Violation
from harness.run.torchstate import guarded
from reference.namespace import Array, array_namespace
from reference.oracle import decode_rows

DRIFT_MAX_BYTES = 2 * 2**30  # exact trajectory kept only below this (float64)
GRAPH_REPLAYS = 5  # CUDA-graph mode: replays per case, each with a new padding pattern
GRAPH_PATTERNS = ("none", "alternate", "all", "random", "first", "last")
# What an implementation's call may raise and still be only that case's crash:
# sys.exit() inside an implementation ends its case, not the run
IMPL_ERRORS = (Exception, SystemExit)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The same elements as integers: bitwise equality, NaN payloads included."""
    return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _torch_guard(result: CaseResult, who: str, step: int | None, cuda: bool):
    """Changes ``who`` makes to torch's process-wide state become
    ``torch-state`` violations of this case, and are undone."""
    return guarded(
        lambda msg: result.violations.append(Violation("torch-state", who, step, msg)), cuda
    )


@dataclass
class _Participant:
    role: str  # "impl" or "baseline"
    impl: Implementation
    inputs: inp_mod.CaseInputs
    alive: bool = True
    pre_state: torch.Tensor | None = None  # named slots before this step's call
    pool_before: torch.Tensor | None = None  # the whole pool before this step's call
    graph: torch.cuda.CUDAGraph | None = None  # captured once in CUDA-graph mode


class _CaseRun:
    """The state of one running case; each method does one check."""

    def __init__(
        self, spec: CaseSpec, impl, baseline, devices: tuple[str, str], result, graph: bool
    ):
        """``devices``: where the kernels run and where the check runs."""
        roles = [("impl", impl)] + ([("baseline", baseline)] if baseline is not None else [])
        self.null_slot = any(i.conventions.null_slot for _, i in roles)
        self.case = spec  # as written; ``spec`` below is what runs
        if self.null_slot:
            spec = inp_mod.for_null_slot(spec, grow=graph)
        self.spec, self.result, self.graph = spec, result, graph
        self.device, self.check_device = devices
        self.tol_out = resolve(spec.tol_out, spec.act_dtype, spec.K)
        self.tol_state = resolve(spec.tol_state, spec.state_dtype, spec.K)
        self.base = inp_mod.build_inputs(spec, self.device)
        self.parts = [_Participant(r, i, self.base.clone()) for r, i in roles]
        self._use_indices(inp_mod.slot_indices(spec))
        self.steps = max(spec.steps, GRAPH_REPLAYS) if graph else spec.steps
        self.exact = None  # the exact float64 trajectory, on the host or the check device
        self.fresh: dict[tuple[str, str], float] = {}  # (who, quantity): this step's max error
        elems = max(1, self.live_rows.size) * spec.HV * spec.K * spec.V
        self.drift_device = device_for_size(self.check_device, elems)
        if self.steps > 1 and elems * 8 <= DRIFT_MAX_BYTES and not graph:
            with self._on_drift_device() as new_array:
                self.exact = self._canonical(self.base.state, new_array, self.live_slots_t)

    def _use_indices(self, indices: list[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.live_rows = np.flatnonzero(idx >= 0)
        self.live_slots = idx[self.live_rows]
        self.pad_rows = np.flatnonzero(idx < 0)
        self.live_slots_t = torch.as_tensor(self.live_slots, device=self.device)
        self.indices = idx
        for part in self.parts:  # each spells padding its own way
            spelled = render_indices(indices, part.impl.conventions)
            new = torch.as_tensor(spelled, device=self.device)
            part.inputs.state_indices.copy_(new.to(part.inputs.state_indices.dtype))

    def _replay_pattern(self, step: int) -> None:
        """CUDA-graph mode: a new padding pattern, written into the captured index buffer.

        Patterns that need more distinct slots than the pool has are passed over
        (``all`` always fits).
        """
        spec = self.case
        for i in range(len(GRAPH_PATTERNS)):
            pattern = GRAPH_PATTERNS[(step - 1 + i) % len(GRAPH_PATTERNS)]
            slots = dataclasses.replace(
                spec.slots,
                indices=None,
                padding=pattern,
                order="permutation",
                pad_seed=step,
                slot0_live=False,
            )
            varied = dataclasses.replace(spec, slots=slots, seed=spec.seed + step)
            try:
                indices = inp_mod.slot_indices(varied)
            except ValueError:
                continue
            break
        indices, _ = plan_slots(indices, spec.pool, self.null_slot)
        self._use_indices(indices)
        new = torch.as_tensor(self.indices, device=self.device)
        self.base.state_indices.copy_(new.to(self.base.state_indices.dtype))

    # --- helpers ---------------------------------------------------------------
    def _oriented(self, slots: torch.Tensor) -> torch.Tensor:
        """Slots in the canonical ``[R, HV, K, V]`` orientation (a view)."""
        return slots if self.spec.layout.state_layout == KV else slots.transpose(-1, -2)

    def _canonical(
        self, slots: torch.Tensor, new_array=host_array, index: torch.Tensor | None = None
    ) -> np.ndarray:
        """Slots ``[R, HV, K, V]`` (``slots[index]`` with an index) on the host,
        transposed on the device for layout vk."""
        if index is None:
            return to_host(self._oriented(slots), new_array)
        return to_host_rows(self._oriented(slots), index, new_array)

    @contextlib.contextmanager
    def _on_drift_device(self):
        """Inside: the drift check's device is current; yields its ``new_array``."""
        dev = self.drift_device
        if dev is None:
            yield host_array
            return
        with dev.activate():
            yield dev.empty
            dev.synchronize()

    def _violate(self, check: str, who: str, step: int | None, message: str) -> None:
        self.result.violations.append(Violation(check, who, step, message))

    def _guarded(self, part: _Participant, step: int):
        """Around a call of ``part``: its changes to torch's process-wide state,
        reported and undone (CUDA generators outside graph capture only)."""
        cuda = self.device.startswith("cuda") and not self.graph
        return _torch_guard(self.result, part.impl.spec, step, cuda)

    def _invoke(self, part: _Participant, inputs: inp_mod.CaseInputs) -> None:
        if not self.graph:
            part.impl.fn(*inputs.args(), **inputs.kwargs())
            return
        if part.graph is None:
            warm = inputs.clone()  # compile outside capture, on buffers of the same layout
            part.impl.fn(*warm.args(), **warm.kwargs())
            torch.cuda.synchronize()
            part.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(part.graph):
                part.impl.fn(*inputs.args(), **inputs.kwargs())
        part.graph.replay()

    def _call(self, part: _Participant, inputs: inp_mod.CaseInputs, step: int) -> bool:
        try:
            with self._guarded(part, step):
                self._invoke(part, inputs)
                _sync(self.device)
        except IMPL_ERRORS as exc:
            part.alive = False
            msg = f"{type(exc).__name__}: {exc}"
            self._violate("crash", part.impl.spec, step, msg)
            self.result.reason = self.result.reason or msg
            return False
        return True

    def _activations(self) -> tuple[np.ndarray, ...]:
        """The step's activations as float32 host arrays: exact for every stored
        dtype (the oracle computes in float64) and half the bytes a device
        check uploads."""
        b = self.base
        return tuple(to_host(t) for t in (b.mixed_qkv, b.a, b.b, b.A_log, b.dt_bias))

    def _tested(
        self, part: _Participant, chunk: np.ndarray, new_array=host_array
    ) -> tuple[np.ndarray, np.ndarray]:
        """``part``'s output rows and named slots for live rows ``chunk``, on the host."""
        rows = torch.as_tensor(self.live_rows[chunk], device=self.device)
        slots = self.live_slots_t[torch.as_tensor(chunk, device=self.device)]
        out = to_host_rows(part.inputs.out, rows, new_array)
        return out, self._canonical(part.inputs.state, new_array, slots)

    def _stats(self, quantity: str, pair: str, step: int, tol: ElementTol) -> ErrorStats:
        s = ErrorStats(quantity=quantity, pair=pair, step=step, tolerance=tol.describe())
        self.result.stats.append(s)
        return s

    # --- one step --------------------------------------------------------------
    def run_step(self, step: int) -> None:
        if step > 0:
            self.base.load_step(self.spec, step)
            for p in self.parts:
                p.inputs.load_step(self.spec, step)
            if self.graph:
                self._replay_pattern(step)
        acts = self._activations()
        alive = [p for p in self.parts if p.alive]
        for p in alive:
            p.pre_state = p.inputs.state[self.live_slots_t].clone()
            p.pool_before = p.inputs.state.clone()
            twin = p.inputs.clone() if step == 0 else None
            p.inputs.poison_out()
            snap = p.inputs.snapshot()
            pad_before = self._pad_rows_of(p.inputs.out).clone()
            if not self._call(p, p.inputs, step):
                continue
            self._check_side_effects(p, step, snap)
            self._check_padding(p, step, pad_before)
            if twin is not None:
                self._check_determinism(p, twin, step)
        alive = [p for p in self.parts if p.alive]
        self._check_values(alive, acts, step)
        if self.exact is not None:
            self._check_drift(alive, acts, step)

    def _check_side_effects(self, p: _Participant, step: int, snap) -> None:
        who, inputs = p.impl.spec, p.inputs
        for msg in inputs.changed_inputs(snap):
            self._violate("inputs", who, step, msg)
        for msg in inputs.guard_violations():
            self._violate("guards", who, step, msg)
        changed = self._changed_untouched_slots(inputs.state, p.pool_before)
        p.pool_before = None
        if changed.size:
            self._violate(
                "untouched-slots",
                who,
                step,
                f"{changed.size} slots that no live row "
                f"names changed (slots {changed[:8].tolist()})",
            )

    def _pad_rows_of(self, out: torch.Tensor) -> torch.Tensor:
        return out[torch.as_tensor(self.pad_rows, device=self.device, dtype=torch.long)]

    def _check_padding(self, p: _Participant, step: int, before: torch.Tensor) -> None:
        """Padding rows of ``out``: exact zeros, or (``pad_output: unwritten``)
        exactly what they held before the call."""
        if not self.pad_rows.size:
            return
        pad = self._pad_rows_of(p.inputs.out)
        if p.impl.conventions.pad_output == UNWRITTEN:
            bad, what = _bits(pad) != _bits(before), "written (declared pad_output: unwritten)"
        else:
            bad, what = pad != 0, "not exactly zero"
        bad = bad.reshape(pad.shape[0], -1).any(dim=1).cpu().numpy()
        if bad.any():
            rows = self.pad_rows[bad][:8].tolist()
            self._violate(
                "padding", p.impl.spec, step, f"{int(bad.sum())} padding rows {what} (rows {rows})"
            )

    def _changed_untouched_slots(self, state: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
        N = state.shape[0]
        per_slot = max(1, state[0].numel())
        step = max(1, 2**26 // per_slot)
        changed = []
        for lo in range(0, N, step):
            a, b = _bits(state[lo : lo + step]), _bits(ref[lo : lo + step])
            diff = (a != b).reshape(a.shape[0], -1).any(dim=1).nonzero().flatten().cpu()
            changed.extend((diff + lo).tolist())
        return np.setdiff1d(np.asarray(changed, dtype=np.int64), self.live_slots)

    def _check_determinism(self, p: _Participant, twin: inp_mod.CaseInputs, step: int) -> None:
        how = "a graph replay and an eager run" if self.graph else "two runs"
        twin.poison_out()
        try:
            with self._guarded(p, step):
                p.impl.fn(*twin.args(), **twin.kwargs())  # eager: also checks a graph replay
                _sync(self.device)
        except IMPL_ERRORS as exc:
            self._violate("determinism", p.impl.spec, step, f"second run raised {exc!r}")
            return
        for name in ("out", "state"):
            x, y = getattr(p.inputs, name), getattr(twin, name)
            if not torch.equal(_bits(x), _bits(y)):
                self._violate(
                    "determinism",
                    p.impl.spec,
                    step,
                    f"{how} on identical inputs gave different {name}",
                )

    def _check_values(self, alive: list[_Participant], acts, step: int) -> None:
        groups = [alive] if self._same_start(alive, step) else [[p] for p in alive]
        ctx = StepContext(
            H=self.spec.H,
            scale=self.spec.effective_scale,
            use_qk_l2norm=self.spec.use_qk_l2norm,
            tol_out=self.tol_out,
            tol_state=self.tol_state,
            step=step,
        )
        shape = (self.spec.HV, self.spec.K, self.spec.V)
        for group in groups:
            totals = self._group_totals(group, step)
            parts = check_blocks(
                ctx,
                self.live_rows.size,
                len(group),
                shape,
                lambda chunk, new_array, g=group: self._block(g, acts, chunk, new_array),
                device=self.check_device,
            )
            merge_into(totals, parts)
            own = {f"{p.impl.spec} vs oracle": p.impl.spec for p in group}
            for s in totals:
                if s.pair in own:
                    self.fresh[(own[s.pair], s.quantity)] = s.max_abs
                if not s.ok:
                    self._violate("values", own.get(s.pair, s.pair), step, s.summary())

    @staticmethod
    def _same_start(alive: list[_Participant], step: int) -> bool:
        """Whether one oracle run serves every participant: they all start this step
        from bit-identical states (always at step 0; later, when the kernels agreed)."""
        if len(alive) < 2 or step == 0:
            return bool(alive)
        first = _bits(alive[0].pre_state)
        return all(torch.equal(first, _bits(p.pre_state)) for p in alive[1:])

    def _group_totals(self, group: list[_Participant], step: int) -> list[ErrorStats]:
        names = [f"{p.impl.spec} vs oracle" for p in group]
        if len(group) == 2:
            names.append(f"{group[0].impl.spec} vs {group[1].impl.spec}")
        totals = [
            self._stats(q, n, step, tol)
            for n in names
            for q, tol in (("out", self.tol_out), ("state", self.tol_state))
        ]
        for s in totals[4:]:  # implementation vs implementation: both are checked vs the oracle
            s.checked = False
        return totals

    def _block(self, group, acts, chunk: np.ndarray, new_array) -> Block:
        """Host copies for live rows ``chunk``: the group's pre-step states and results."""
        qkv, a, b, A_log, dt_bias = acts
        rows = self.live_rows[chunk]
        run = row_run(chunk)
        pre = group[0].pre_state
        if run is not None:
            pre = self._canonical(pre[run], new_array)
        else:
            pre = self._canonical(pre, new_array, torch.as_tensor(chunk, device=self.device))
        return Block(
            acts=(qkv[rows], a[rows], b[rows], A_log, dt_bias),
            rows=rows,
            slots=self.live_slots[chunk],
            pre=pre,
            tested=[self._tested(p, chunk, new_array) for p in group],
        )

    def _check_drift(self, alive: list[_Participant], acts, step: int) -> None:
        with self._on_drift_device() as new_array:
            self._drift_step(alive, acts, step, new_array)

    def _drift_step(self, alive: list[_Participant], acts, step: int, new_array) -> None:
        """The exact trajectory one step on, each participant's drift from it
        and the drift budget, in the module of the trajectory's arrays."""
        qkv, a, b, A_log, dt_bias = acts
        rows = self.live_rows
        ref = decode_rows(
            qkv[rows],
            a[rows],
            b[rows],
            A_log,
            dt_bias,
            self.exact,
            H=self.spec.H,
            scale=self.spec.effective_scale,
            use_qk_l2norm=self.spec.use_qk_l2norm,
        )
        self.exact = ref.state
        drifts = {}
        for p in alive:
            out, st = self._tested(p, np.arange(rows.size), new_array)
            out, st = (
                _saturated(out, ref.out, self.tol_out),
                _saturated(st, ref.state, self.tol_state),
            )
            d = DriftStats(
                who=p.impl.spec,
                step=step,
                state_max_abs=max_abs(st - ref.state),
                state_rel_rms=rel_rms(st, ref.state),
                out_max_abs=max_abs(out - ref.out),
                out_rel_rms=rel_rms(out, ref.out),
            )
            self.result.drift.append(d)
            drifts[p.role] = d
        if "impl" in drifts and "baseline" in drifts:
            self._check_drift_budget(drifts["impl"], drifts["baseline"], ref, step)

    def _check_drift_budget(self, d: DriftStats, base: DriftStats, ref, step: int) -> None:
        checks = (
            ("state", d.state_max_abs, base.state_max_abs, self.tol_state),
            ("out", d.out_max_abs, base.out_max_abs, self.tol_out),
        )
        for name, got, theirs, tol in checks:
            ref_max, fresh = max_abs(getattr(ref, name)), self.fresh.get((d.who, name), 0.0)
            if not got <= tol.drift_budget(theirs, ref_max, fresh):
                floor = tol.drift_floor(ref_max)
                self._violate(
                    "drift",
                    d.who,
                    step,
                    f"{name} drift {got:.3g} from the exact trajectory exceeds "
                    f"{tol.drift_factor:g} x (baseline drift {theirs:.3g} + {floor:.3g}) "
                    f"+ {fresh:.3g} (its own error this step)",
                )


def _saturated(x: Array, ref: Array, tol: ElementTol) -> Array:
    """``x`` with every Inf of the exact value's sign moved to the overflow edge
    (or to the exact value beyond it), so that drift measures the distance and
    the drift budget judges it; an Inf of the other sign stays infinite."""
    if bool(array_namespace(x).isfinite(x).all()):
        return x
    return saturate_overflow(x, ref, np.inf, tol.overflow)[0]


def _expect_error(spec: CaseSpec, parts: list[Implementation], device: str, result) -> None:
    """Error cases: every built-in wrapper must reject the overridden arguments."""
    for impl in parts:
        inputs = inp_mod.apply_overrides(inp_mod.build_inputs(spec, device), dict(spec.overrides))
        try:
            with _torch_guard(result, impl.spec, None, device.startswith("cuda")):
                impl.fn(*inputs.args(), **inputs.kwargs())
        except IMPL_ERRORS as exc:
            wrong = _wrong_rejection(spec, exc)
        else:
            wrong = (
                f"accepted the arguments; expected {spec.expect.exception} matching "
                f"{spec.expect.match!r}"
            )
        if wrong:
            result.violations.append(Violation("expect-error", impl.spec, None, wrong))


def _wrong_rejection(spec: CaseSpec, exc: BaseException) -> str | None:
    """What is wrong with how an error case was rejected, or None when it is right."""
    assert spec.expect is not None
    if type(exc).__name__ != spec.expect.exception:
        return f"raised {type(exc).__name__}, expected {spec.expect.exception}: {exc}"
    if not re.search(spec.expect.match, str(exc)):
        return f"message {str(exc)!r} does not match {spec.expect.match!r}"
    return None


def _validates(impl: Implementation) -> bool:
    """Error cases exercise the built-in kernel wrappers' validation only."""
    return impl.builtin and getattr(impl.fn, "validates", True)


def _skip_reason(spec: CaseSpec, impl: Implementation, device: str, graph: bool) -> str | None:
    reason = tier_unrunnable(spec.tier, device)
    if reason is None and graph and not device.startswith("cuda"):
        reason = "CUDA-graph mode needs a CUDA device"
    if reason is None and graph and spec.expect is not None:
        reason = "error cases are not captured in CUDA graphs"
    if reason is None and spec.expect is not None and not _validates(impl):
        reason = f"error case: exercises the built-in wrappers' validation, not {impl.spec}'s"
    return reason or spec.pinned_against(impl.conventions) or impl.unsupported(spec)


def run_case(
    spec: CaseSpec,
    impl: Implementation,
    baseline: Implementation | None = None,
    device: str | None = None,
    graph: bool = False,
    check_device: str | None = None,
) -> CaseResult:
    """Run one case and return its result; never raises for a failing kernel.

    ``check_device`` is where the oracle and the per-element check run
    (``cpu``, ``cuda`` or ``auto``; None: ``GDN_CHECK_DEVICE``, else auto:
    the run's GPU when CuPy can use it).

    With ``graph`` (CUDA only) each implementation is captured once in a CUDA
    graph and replayed for every step, with new activations and a new padding
    pattern written into the captured buffers before each replay.
    """
    device = device or default_device()
    if device == "cuda":  # pin the GPU: worker threads start on cuda:0 otherwise
        device = f"cuda:{torch.cuda.current_device()}"
    result = CaseResult(
        case=spec, impl=impl.spec, baseline=baseline and baseline.spec, device=device
    )
    if not impl.conventions.is_default:
        result.conventions = impl.conventions.as_dict()
    start = time.perf_counter()
    try:
        reason = _skip_reason(spec, impl, device, graph)
        if reason:
            result.status, result.reason = SKIPPED, reason
            return result
        checker = resolve_check_device(check_device, device)
        _run_body(spec, impl, baseline, (device, checker), graph, result)
    except IMPL_ERRORS as exc:
        result.status = CRASHED
        result.reason = f"harness error: {type(exc).__name__}: {exc}"
        result.violations.append(Violation("crash", "harness", None, traceback.format_exc(limit=6)))
    result.duration_s = time.perf_counter() - start
    if result.status != CRASHED and result.violations:
        crashed = any(v.check == "crash" for v in result.violations)
        result.status = CRASHED if crashed else FAILED
    return result


def _run_body(spec: CaseSpec, impl, baseline, devices, graph: bool, result) -> None:
    """An error case's rejections, or every step of a case until all have crashed.
    ``devices``: where the kernels run and where the check runs."""
    if spec.expect is not None:
        parts = [impl] + ([baseline] if baseline is not None and _validates(baseline) else [])
        _expect_error(spec, parts, devices[0], result)
        return
    run = _CaseRun(spec, impl, baseline, devices, result, graph)
    for step in range(run.steps):
        run.run_step(step)
        if not any(p.alive for p in run.parts):
            break
