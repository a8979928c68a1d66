"""Crash isolation: cases run in a worker process that may die.

A kernel that makes an illegal memory access poisons its CUDA context for
the rest of the process, and a hung kernel never returns. Cases therefore
run one at a time in a spawned worker; when the worker dies or a case
outlives its timeout, that case is recorded as a crash (with its rerun
command), the worker is replaced, and the run goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterator
from multiprocessing import util

from harness.check.pool import spawn_env
from harness.core.spec import CaseSpec
from harness.run.result import CRASHED, CaseResult, Violation

# NumPy's BLAS threads cost more than they give on a step's small arrays (a
# 200-step B = 4 case: 25 s with two threads, 15 s with one; 55 s and 27 s next
# to another busy process); the big checks go to the check workers anyway
CASE_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def _worker(
    conn,
    impl_spec: str,
    baseline_spec: str | None,
    device: str,
    graph: bool,
    check_workers: int | None = None,
) -> None:
    if check_workers is not None:
        os.environ["GDN_CHECK_WORKERS"] = str(check_workers)

    from harness.check.pool import close_shared_pool
    from harness.impls.registry import load_implementation
    from harness.run.runner import run_case

    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # Triton launches on the current device

    impl = load_implementation(impl_spec)
    baseline = load_implementation(baseline_spec) if baseline_spec else None
    try:
        while True:
            spec = conn.recv()  # EOFError when the parent is gone
            if spec is None:
                return
            conn.send(run_case(spec, impl, baseline, device, graph))
    finally:
        close_shared_pool()


def _reap(proc) -> None:
    """Kill ``proc`` if it still runs, and remove the check files it leaves."""
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)
    if proc.pid is not None:
        from harness.check.pool import remove_scratch

        remove_scratch(proc.pid)


class IsolatedRunner:
    """Runs cases in a replaceable worker process with a per-case timeout."""

    def __init__(
        self,
        impl: str,
        baseline: str | None,
        device: str,
        timeout_s: float,
        graph: bool = False,
        check_workers: int | None = None,
    ):
        self.args = (impl, baseline, device, graph)
        self.check_workers = check_workers
        self.timeout_s = timeout_s
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self._reaper = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker, args=(child, *self.args, self.check_workers)
        )  # not a daemon: it starts the check workers
        with spawn_env(CASE_WORKER_ENV, keep_set=True):
            self.proc.start()
        child.close()
        self.conn = parent
        # at exit, before multiprocessing joins its children: a worker whose
        # runner was never closed would wait for its next case forever
        self._reaper = util.Finalize(self, _reap, args=(self.proc,), exitpriority=100)

    def _kill(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self.proc is not None:
            _reap(self.proc)
        self.proc = self.conn = None

    def run(self, spec: CaseSpec) -> CaseResult:
        if self.proc is None or not self.proc.is_alive():
            if self.proc is not None:
                self._kill()  # reap the dead one now, not at exit under a reused pid
            self._start()
        start = time.perf_counter()
        try:
            self.conn.send(spec)
        except OSError as exc:  # the worker died before it read the case
            self._kill()
            return self._crash(spec, f"worker process unreachable: {exc}", 0.0)
        why = None
        if self.conn.poll(self.timeout_s):
            try:
                return self.conn.recv()
            except EOFError:
                why = "worker process died"
        else:
            why = f"timed out after {self.timeout_s:g} s"
        if why == "worker process died" or not self.proc.is_alive():
            self.proc.join(timeout=5)
            code = self.proc.exitcode
            why = f"worker process died (exit code {code})" if code is not None else why
        self._kill()
        return self._crash(spec, why, time.perf_counter() - start)

    def _crash(self, spec: CaseSpec, why: str, elapsed: float) -> CaseResult:
        impl, baseline, device, _ = self.args
        result = CaseResult(spec, impl, baseline, status=CRASHED, reason=why, device=device)
        result.duration_s = elapsed
        result.violations.append(
            Violation("crash", impl, None, f"{why}; the case was isolated and the run went on")
        )
        return result

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.send(None)
                self.proc.join(timeout=10)
            except (BrokenPipeError, OSError):
                pass
        self._kill()


def run_isolated(
    cases: list[CaseSpec],
    impl: str,
    baseline: str | None,
    devices: list[str],
    timeout_s: float,
    graph: bool = False,
) -> Iterator[CaseResult]:
    """Yield one result per case, surviving worker crashes.

    With one device the results come in case order; with several, one worker
    per device takes cases from a shared queue and results come as they end.
    """
    if len(devices) == 1:
        runner = IsolatedRunner(impl, baseline, devices[0], timeout_s, graph)
        try:
            for spec in cases:
                yield runner.run(spec)
        finally:
            runner.close()
        return
    yield from _run_parallel(cases, impl, baseline, devices, timeout_s, graph)


def _run_parallel(cases, impl, baseline, devices, timeout_s, graph) -> Iterator[CaseResult]:
    todo: queue.Queue = queue.Queue()
    for spec in cases:
        todo.put(spec)
    done: queue.Queue = queue.Queue()
    share = None  # CPUs for each worker's check processes
    if "GDN_CHECK_WORKERS" not in os.environ:
        from harness.check.pool import cpu_count

        share = max(1, cpu_count() // len(devices))

    def serve(device: str) -> None:
        runner = IsolatedRunner(impl, baseline, device, timeout_s, graph, share)
        try:
            while True:
                try:
                    spec = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(runner.run(spec))
                except Exception as exc:  # every taken case must come back
                    done.put(runner._crash(spec, f"{type(exc).__name__}: {exc}", 0.0))
        finally:
            runner.close()

    threads = [threading.Thread(target=serve, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    try:
        for _ in cases:
            yield done.get()
    finally:  # also on an early stop (-x): hand out no more cases, let workers finish
        while not todo.empty():
            try:
                todo.get_nowait()
            except queue.Empty:
                break
        for t in threads:
            t.join()


def default_timeout() -> float:
    return float(os.environ.get("GDN_CASE_TIMEOUT", "600"))
