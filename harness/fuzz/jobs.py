"""``gdn-harness fuzz --jobs N``: N fuzz processes at once, one report.

A fuzz example is mostly host work (drawing, building inputs, compiling
kernels for a new family, the small checks), so one process leaves a GPU
machine's other cores and most of the GPU idle. Each job is a
``gdn-harness fuzz`` process of its own with seed ``seed + i`` (or a random
one) and family pool ``family_seed + i``, so the jobs search different
parts of the space, and a job that dies (a segfaulting kernel) costs only
itself. The first job to find a failure touches a stop file, which stops
the others drawing, then shrinks and saves it as usual (jobs that found one
in the same moment may save it too: each file is written whole and counted
once); the run reports every job's counts and what was saved. SIGTERM or
Ctrl-C ends every job.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from harness.core.exitcodes import EXIT_FAIL, EXIT_OK
from harness.fuzz.command import FuzzOptions, search_args

POLL_S = 0.5


def job_options(opts: FuzzOptions, i: int, stop_file: Path, report: Path) -> FuzzOptions:
    """The options of job ``i``: its seeds, and the run's stop file and its report file."""
    return replace(
        opts,
        seed=None if opts.seed is None else opts.seed + i,
        family_seed=opts.family_seed + i,
        jobs=1,
        job=i,
        stop_file=stop_file,
        report_json=report,
    )


def job_argv(o: FuzzOptions) -> list[str]:
    """The command line of one job: the run's search, and where the job reports."""
    argv = [sys.executable, "-m", "harness", "fuzz"]
    argv += search_args(o, o.seed, o.baseline or "none")
    argv += ["--shrink-budget", f"{o.shrink_budget:g}"]
    plumbing = {
        "--save-dir": o.save_dir,
        "--device": o.device,
        "--job": o.job,
        "--stop-file": o.stop_file,
        "--report-json": o.report_json,
    }
    for flag, value in plumbing.items():
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--quiet"] if o.quiet else [])


def run_jobs(opts: FuzzOptions) -> int:
    """Run ``opts.jobs`` fuzz jobs to the end; 1 if any found a failure or died."""
    with tempfile.TemporaryDirectory(prefix="gdn-fuzz-jobs-") as tmp:
        stop = Path(tmp) / "stop"
        jobs = [job_options(opts, i, stop, Path(tmp) / f"job{i}.json") for i in range(opts.jobs)]
        print(f"fuzz: {opts.jobs} jobs: " + shlex.join(job_argv(jobs[0])), flush=True)
        start = time.monotonic()
        procs = [subprocess.Popen(job_argv(o)) for o in jobs]
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            codes = _wait(procs, stop)
        finally:
            signal.signal(signal.SIGTERM, previous)
            _end(procs)  # interrupted or terminated: no job outlives the run
        elapsed = time.monotonic() - start
        reports = [_read(o.report_json) for o in jobs]
    return _print_summary(reports, codes, elapsed)


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)  # runs the finally that ends the jobs


def _end(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait(procs: list[subprocess.Popen], stop: Path) -> list[int]:
    """Exit codes of every job; the first that exits with a failure stops the others."""
    while any(p.poll() is None for p in procs):
        if not stop.exists() and any(p.returncode == EXIT_FAIL for p in procs):
            stop.touch()
        time.sleep(POLL_S)
    return [p.returncode for p in procs]


def _read(path: Path | None) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None


def _why(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _print_summary(reports: list[dict | None], codes: list[int], elapsed: float) -> int:
    examples = sum(r["examples"] for r in reports if r)
    rate = examples / elapsed if elapsed > 0 else 0.0
    saved = sorted({r["saved"] for r in reports if r and r.get("saved")})  # jobs may agree
    died = [(i, c) for i, (r, c) in enumerate(zip(reports, codes, strict=True)) if r is None]
    for i, (r, code) in enumerate(zip(reports, codes, strict=True)):
        if r is None:
            print(f"fuzz: job {i} died ({_why(code)}) before reporting; its output is above")
        else:
            print(
                f"fuzz: job {i}: {r['examples']} examples, seed {r['seed']}, "
                f"stopped by {r['stop_reason']}" + (f", saved {r['saved']}" if r["saved"] else "")
            )
    print(
        f"fuzz: {len(codes)} jobs, {examples} examples in {elapsed:.1f}s ({rate:.1f}/s): "
        + (f"{len(saved)} failure(s) saved" if saved else "no failure")
        + (f", {len(died)} job(s) died" if died else "")
    )
    return (
        EXIT_FAIL
        if saved or died or any(c not in (EXIT_OK, EXIT_FAIL) for c in codes)
        else (EXIT_OK)
    )
