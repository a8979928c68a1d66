"""Running a list of cases, the way every face asks for it: :func:`run_cases`.

Three modes, chosen by ``isolate``:

* ``None`` (the default): every case runs in a worker process of the run,
  restarted when it dies. An implementation that calls ``os._exit`` or
  ``sys.exit``, segfaults or hangs past the timeout costs its own case (a
  ``crashed`` result that names it) and the run goes on. On the CPU the
  worker inherits this process's environment, so its statistics are
  bit-identical to a run in this process; on CUDA it is the isolated worker
  below, one per GPU.
* ``True``: isolated workers as for a GPU run, with one BLAS thread each.
* ``False``: in this process. ``sys.exit`` in an implementation is still
  its case's crash, but nothing can survive ``os._exit`` or a segfault and
  nothing can stop a hang, so a timeout is refused (``ValueError``);
  ``on_start`` lets the caller record each case before it starts.

A crashed case is a failed case: a command that ran them exits with
``EXIT_FAIL`` (harness.core.exitcodes), like any other failure, after
recording every case.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from harness.core.spec import CaseSpec
from harness.core.tiers import on_cuda
from harness.impls.registry import Implementation, load_implementation
from harness.run.isolate import CASE_WORKER_ENV, OnStart, default_timeout, run_isolated
from harness.run.result import CaseResult

Impl = str | Implementation


def worker_devices(device: str, jobs: int | None = None) -> list[str]:
    """One device per worker: ``jobs`` CPU workers, or one per visible GPU
    (``jobs`` of them, round robin) unless ``device`` names one GPU."""
    if not on_cuda(device):
        return [device] * max(1, jobs or 1)
    if ":" in device:
        return [device]
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{i % count}" for i in range(jobs or count)]


@dataclass(frozen=True)
class RunMode:
    """How a run runs its cases (see the module's docstring)."""

    isolate: bool | None = None
    timeout: float | None = None  # per case, seconds; None: the default in a worker
    jobs: int | None = None
    graph: bool = False
    sanitize: bool = False

    def check(self) -> None:
        """Refuse a combination that cannot work, with a sentence that says why."""
        if self.sanitize or self.isolate is not False:
            return
        if self.timeout is not None:
            raise ValueError(
                "a per-case timeout needs a worker process: in this process a hung "
                "implementation cannot be stopped (drop --no-isolate or --timeout)"
            )
        if (self.jobs or 1) > 1:
            raise ValueError("several jobs need worker processes (drop --no-isolate or --jobs)")

    @property
    def case_timeout(self) -> float:
        return default_timeout() if self.timeout is None else self.timeout

    def rerun_flags(self) -> tuple[str, ...]:
        """The flags a rerun needs to run a case as this run did."""
        flags: list[str] = []
        if self.sanitize:
            flags.append("--sanitize")
        elif self.isolate:
            flags.append("--isolate")
        if self.graph:
            flags.append("--cuda-graph")
        explicit = self.timeout is not None and self.timeout != default_timeout()
        if explicit or (self.isolate and not self.sanitize):
            flags += ["--timeout", f"{self.case_timeout:g}"]
        return tuple(flags)


def _spec_of(impl: Impl | None) -> str | None:
    return impl if impl is None or isinstance(impl, str) else impl.spec


def _loaded(impl: Impl | None) -> Implementation | None:
    return load_implementation(impl) if isinstance(impl, str) else impl


def run_cases(
    specs: Sequence[CaseSpec],
    impl: Impl,
    baseline: Impl | None = None,
    device: str | None = None,
    *,
    isolate: bool | None = None,
    timeout: float | None = None,
    jobs: int | None = None,
    graph: bool = False,
    sanitize: bool = False,
    on_start: OnStart | None = None,
) -> Iterator[CaseResult]:
    """Yield one result per case of ``specs``; a dying or hanging
    implementation costs its own case only (see the module's modes).

    ``impl`` and ``baseline`` are implementation specs (or loaded
    implementations; a worker loads them again by spec, with the conventions
    they carry). ``timeout``
    is per case, in seconds (``None``: ``GDN_CASE_TIMEOUT`` or 600 in a
    worker, none in this process); ``jobs`` workers share the cases
    (results then come as they end); ``graph`` replays CUDA graphs;
    ``sanitize`` runs each case under compute-sanitizer instead. Every
    result carries the flags its rerun command needs. Raises ``ValueError``
    before any case runs for a combination that cannot work (a timeout or
    several jobs in this process).
    """
    mode = RunMode(isolate, timeout, jobs, graph, sanitize)
    mode.check()
    if device is None:
        from harness.run.runner import default_device

        device = default_device()
    return _flagged(_results(specs, impl, baseline, device, mode, on_start), mode.rerun_flags())


def _flagged(results: Iterator[CaseResult], flags: tuple[str, ...]) -> Iterator[CaseResult]:
    for result in results:
        result.rerun_flags = flags
        yield result


def _results(specs, impl, baseline, device: str, mode: RunMode, on_start) -> Iterator[CaseResult]:
    if mode.sanitize:
        yield from _sanitized(specs, _spec_of(impl), mode.case_timeout, on_start)
    elif mode.isolate is False:
        yield from _in_process(
            specs, _loaded(impl), _loaded(baseline), device, mode.graph, on_start
        )
    else:
        yield from run_isolated(
            list(specs),
            impl,
            baseline,
            worker_devices(device, mode.jobs),
            mode.case_timeout,
            mode.graph,
            env=CASE_WORKER_ENV if mode.isolate or on_cuda(device) else {},
            on_start=on_start,
        )


def _in_process(specs, impl, baseline, device, graph, on_start) -> Iterator[CaseResult]:
    from harness.run.runner import run_case

    for spec in specs:
        if on_start is not None:
            on_start(spec)
        yield run_case(spec, impl, baseline, device, graph)


def _sanitized(specs, impl: str, timeout: float, on_start) -> Iterator[CaseResult]:
    from harness.run.memcheck import run_sanitized

    for spec in specs:
        if on_start is not None:
            on_start(spec)
        yield run_sanitized(spec, impl, timeout)
