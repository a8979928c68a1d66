"""Crash isolation: cases run in a worker process that may die.

An implementation can end its process (``os._exit``, a segfault, an abort),
a kernel that makes an illegal memory access poisons its CUDA context for
the rest of the process, and a hung kernel never returns. Cases therefore
run one at a time in a spawned worker that the parent watches. When the
worker dies or a case outlives its timeout, that case is recorded as a
crash (with its rerun command and, where Python could still say it, the
worker's stack at that moment), the worker is replaced, and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import multiprocessing as mp
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing import util
from typing import TYPE_CHECKING, Any

from harness.check.pool import spawn_env
from harness.core.spec import CaseSpec
from harness.run.result import CRASHED, CaseResult, Violation

if TYPE_CHECKING:
    from harness.impls.registry import Implementation

# NumPy's BLAS threads cost more than they give on a step's small arrays (a
# 200-step B = 4 case: 25 s with two threads, 15 s with one; 55 s and 27 s next
# to another busy process); the big checks go to the check workers anyway
CASE_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1"}
STACK_LINES = 30  # lines of the worker's stack (innermost first) kept in a crash's message
STACK_WAIT_S = 1.0  # how long a hung worker is given to write its stack
# A worker's start (spawn, import torch and Triton, load the implementations)
# is not part of any case's timeout; this bounds it on its own
START_TIMEOUT_S = 300.0

OnStart = Callable[[CaseSpec], None]
# What a worker needs to load an implementation as the parent holds it: its
# spec, and the conventions the parent gave it (None: those it declares)
Portable = tuple[str, Any]

_stack_file = None  # the worker's open stack file: faulthandler writes to it


def _watch_stack(path: str | None) -> None:
    """In the worker: write the Python stack to ``path`` on a fatal signal (the
    faulting thread's) or when the parent asks (SIGUSR1) before stopping a hung
    case (every thread's: the signal may land in any of them)."""
    global _stack_file
    if path is None:
        return
    _stack_file = open(path, "w")  # noqa: SIM115 - open for the worker's whole life
    faulthandler.enable(_stack_file, all_threads=False)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, _stack_file, all_threads=True)


def _exit_with_parent() -> None:
    """In the worker: end when the parent is gone (killed mid-case, a hung case
    would otherwise keep the worker running; an idle one sees EOF on its own)."""
    parent = os.getppid()

    def _parent_watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=_parent_watch, daemon=True).start()


def portable(impl: str | Implementation | None) -> Portable | None:
    """``impl`` as a worker can load it again."""
    if impl is None or isinstance(impl, str):
        return None if impl is None else (impl, None)
    return (impl.spec, getattr(impl, "conventions", None))


def load_portable(impl: Portable | None) -> Implementation | None:
    """In the worker: the implementation the parent held, conventions included."""
    from harness.impls.registry import load_implementation

    if impl is None:
        return None
    loaded = load_implementation(impl[0])
    return loaded if impl[1] is None else dataclasses.replace(loaded, conventions=impl[1])


def _worker(
    conn,
    impl_spec: Portable,
    baseline_spec: Portable | None,
    device: str,
    graph: bool,
    check_workers: int | None = None,
    stack_path: str | None = None,
) -> None:
    _watch_stack(stack_path)
    _exit_with_parent()
    if check_workers is not None:
        os.environ["GDN_CHECK_WORKERS"] = str(check_workers)

    from harness.check.pool import close_shared_pool
    from harness.run.runner import run_case

    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # Triton launches on the current device

    try:
        impl = load_portable(impl_spec)
        baseline = load_portable(baseline_spec)
    except Exception as exc:
        conn.send(f"could not load the implementations: {type(exc).__name__}: {exc}")
        return
    conn.send(None)  # ready: the parent starts the case's clock now
    try:
        while True:
            spec = conn.recv()  # EOFError when the parent is gone
            if spec is None:
                return
            conn.send(run_case(spec, impl, baseline, device, graph))
    finally:
        close_shared_pool()


def _reap(proc, stack_path: str | None = None) -> None:
    """Kill ``proc`` if it still runs, and remove the files it leaves."""
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)
    if proc.pid is not None:
        from harness.check.pool import remove_scratch

        remove_scratch(proc.pid)
    if stack_path is not None:
        with contextlib.suppress(OSError):
            os.unlink(stack_path)


def death_reason(exitcode: int | None) -> str:
    """How a worker ended, in words: its exit code, or the signal that killed it."""
    if exitcode is None:
        return "worker process died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process killed by {name} (exit code {exitcode})"
    return f"worker process died (exit code {exitcode})"


class IsolatedRunner:
    """Runs cases in a replaceable worker process with a per-case timeout.

    ``impl`` and ``baseline`` are specs or loaded implementations (the worker
    loads them again by spec, with the conventions they carry). ``env`` is
    set for the worker only (a variable the user set keeps its value); the
    default gives its BLAS one thread.
    """

    def __init__(
        self,
        impl: str | Implementation,
        baseline: str | Implementation | None,
        device: str,
        timeout_s: float,
        graph: bool = False,
        check_workers: int | None = None,
        env: Mapping[str, str] = CASE_WORKER_ENV,
    ):
        self.args = (portable(impl), portable(baseline), device, graph)
        self.names = tuple(None if p is None else p[0] for p in self.args[:2])
        self.check_workers = check_workers
        self.timeout_s = timeout_s
        self.env = dict(env)
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self.stack_path: str | None = None
        self._reaper = None

    def _start(self) -> None:
        fd, self.stack_path = tempfile.mkstemp(prefix="gdn-worker-", suffix=".stack")
        os.close(fd)
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker, args=(child, *self.args, self.check_workers, self.stack_path)
        )  # not a daemon: it starts the check workers
        with spawn_env(self.env, keep_set=True):
            self.proc.start()
        child.close()
        self.conn = parent
        # at exit, before multiprocessing joins its children: a worker whose
        # runner was never closed would wait for its next case forever
        self._reaper = util.Finalize(
            self, _reap, args=(self.proc, self.stack_path), exitpriority=100
        )

    def _kill(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self.proc is not None:
            _reap(self.proc, self.stack_path)
        self.proc = self.conn = self.stack_path = None

    def _ready(self) -> str | None:
        """A running worker that has loaded the implementations, or why not."""
        if self.proc is not None and self.proc.is_alive():
            return None
        if self.proc is not None:
            self._kill()  # reap the dead one now, not at exit under a reused pid
        self._start()
        if not self.conn.poll(START_TIMEOUT_S):
            return f"worker process did not start within {START_TIMEOUT_S:g} s"
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(timeout=5)
            return death_reason(self.proc.exitcode) + " while starting"

    def run(self, spec: CaseSpec) -> CaseResult:
        why = self._ready()
        if why is not None:
            stack = self._last_stack()
            self._kill()
            return self._crash(spec, why, 0.0, stack)
        start = time.perf_counter()
        try:
            self.conn.send(spec)
        except OSError as exc:  # the worker died before it read the case
            self._kill()
            return self._crash(spec, f"worker process unreachable: {exc}", 0.0)
        if self.conn.poll(self.timeout_s):
            try:
                return self.conn.recv()
            except (EOFError, OSError):  # it died mid-case: a reset pipe reads either way
                self.proc.join(timeout=5)
                why = death_reason(self.proc.exitcode)
        else:
            why = f"timed out after {self.timeout_s:g} s"
            self._ask_for_stack()
        stack = self._last_stack()
        self._kill()
        return self._crash(spec, why, time.perf_counter() - start, stack)

    def _ask_for_stack(self) -> None:
        """A hung worker writes its stack (faulthandler) before it is killed."""
        if not hasattr(signal, "SIGUSR1") or not self.proc.is_alive():
            return
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + STACK_WAIT_S
        while time.monotonic() < deadline and not os.path.getsize(self.stack_path):
            time.sleep(0.05)
        time.sleep(0.1)  # let it finish the dump it began

    def _last_stack(self) -> str:
        """The stack the worker wrote, if any, innermost frame first, without
        the parent watch's thread and the list of extension modules."""
        try:
            with open(self.stack_path, errors="replace") as f:
                blocks = f.read().split("\n\n")
        except (OSError, TypeError):
            return ""
        keep = [
            b
            for b in blocks
            if "in _parent_watch" not in b and not b.startswith("Extension modules:")
        ]
        return "\n".join("\n\n".join(keep).splitlines()[:STACK_LINES]).strip()

    def _crash(self, spec: CaseSpec, why: str, elapsed: float, stack: str = "") -> CaseResult:
        impl, baseline = self.names
        device = self.args[2]
        result = CaseResult(spec, impl, baseline, status=CRASHED, reason=why, device=device)
        result.duration_s = elapsed
        msg = f"{why}; the case was isolated and the run went on"
        if stack:
            msg += f"\nthe worker's Python stack at that moment:\n{stack}"
        result.violations.append(Violation("crash", impl, None, msg))
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
    impl: str | Implementation,
    baseline: str | Implementation | None,
    devices: list[str],
    timeout_s: float,
    graph: bool = False,
    env: Mapping[str, str] = CASE_WORKER_ENV,
    on_start: OnStart | None = None,
) -> Iterator[CaseResult]:
    """Yield one result per case, surviving worker crashes.

    With one device the results come in case order; with several, one worker
    per device takes cases from a shared queue and results come as they end.
    ``on_start(spec)`` is called as each case is handed to a worker (from
    that worker's thread when there are several).
    """
    if len(devices) == 1:
        runner = IsolatedRunner(impl, baseline, devices[0], timeout_s, graph, env=env)
        try:
            for spec in cases:
                if on_start is not None:
                    on_start(spec)
                yield runner.run(spec)
        finally:
            runner.close()
        return
    yield from _run_parallel(cases, (impl, baseline, timeout_s, graph, env), devices, on_start)


def _check_share(devices: list[str]) -> int | None:
    """CPUs for each worker's check processes, unless the user chose."""
    if "GDN_CHECK_WORKERS" in os.environ:
        return None
    from harness.check.pool import cpu_count

    return max(1, cpu_count() // len(devices))


def _run_parallel(cases, setup, devices, on_start) -> Iterator[CaseResult]:
    impl, baseline, timeout_s, graph, env = setup
    todo: queue.Queue = queue.Queue()
    for spec in cases:
        todo.put(spec)
    done: queue.Queue = queue.Queue()
    share = _check_share(devices)

    def serve(device: str) -> None:
        runner = IsolatedRunner(impl, baseline, device, timeout_s, graph, share, env)
        try:
            while True:
                try:
                    spec = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    if on_start is not None:
                        on_start(spec)
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
