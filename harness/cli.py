"""The ``gdn-harness`` command (also ``python -m harness``).

Exit codes: 0 nothing violated, 1 a case failed or crashed, 2 bad usage or
bad case files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.cases import load as case_mod
from harness.core.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from harness.core.spec import CaseSpec
from harness.core.tiers import TIERS, runnable_tiers
from harness.impls.registry import ImplError, available_impls, load_implementation
from harness.report import (
    ResultLog,
    console_failure,
    console_line,
    default_run_name,
    write_summaries,
)
from harness.run.isolate import default_timeout
from harness.run.result import CaseResult
from harness.run.runner import default_device, run_case


class UsageError(Exception):
    """Bad command-line input that argparse cannot see (exit 2)."""


def load_selected(paths: Sequence[str], tiers: set[str] | None, keyword: str | None):
    """Load PATHS (files, folders, or ``file.yaml::case`` ids) and select cases."""
    loaded: list[CaseSpec] = []
    for p in paths:
        file, sep, name = p.partition("::")
        specs = case_mod.load_paths([file])
        if sep:
            specs = [s for s in specs if s.name == name]
            if not specs:
                raise case_mod.CaseFileError(file, name, None, None, "no such case in the file")
        loaded.extend(specs)
    try:
        return case_mod.select(loaded, tiers=tiers, keyword=keyword)
    except ValueError as exc:  # a malformed -k expression or an unknown tier
        raise UsageError(str(exc)) from None


def _tiers(values: list[str] | None, device: str) -> set[str]:
    if not values:
        return runnable_tiers(device)
    return set(TIERS) if "all" in values else set(values)


def cmd_run(args: argparse.Namespace) -> int:
    device = args.device or default_device()
    cases = load_selected(args.paths, _tiers(args.tier, device), args.keyword)
    if not cases:
        print("error: no cases selected (check the paths, -k and --tier)", file=sys.stderr)
        return EXIT_USAGE
    impl = load_implementation(args.impl)
    baseline = None if args.baseline == "none" else load_implementation(args.baseline)
    report_dir = Path(args.report_dir) / (args.run_name or default_run_name())
    log = ResultLog(report_dir, fresh=True)
    from harness.report.progress import Progress

    progress = Progress(len(cases))
    failed = 0
    for result in _results(args, cases, impl, baseline, device):
        spec = result.case
        log.append(result)
        progress.clear()
        print(console_line(result), flush=True)
        if result.failed:
            failed += 1
            print(console_failure(result), flush=True)
            if args.exitfirst:
                break
        progress.update(spec.id)
    progress.clear()
    meta = {
        "impl": impl.spec,
        "baseline": baseline and baseline.spec,
        "device": device,
        "cuda_graph": args.cuda_graph,
    }
    summary = write_summaries(report_dir, meta)
    c = summary["counts"]
    print(
        f"{c['passed']} passed, {c['failed'] + c['crashed']} failed, {c['skipped']} skipped "
        f"(report: {report_dir})"
    )
    return EXIT_FAIL if failed else EXIT_OK


def _results(args, cases, impl, baseline, device) -> Iterator[CaseResult]:
    """Results: in-process, crash-isolated (one worker per GPU), or under memcheck."""
    if args.sanitize:
        from harness.run.memcheck import run_sanitized

        return (run_sanitized(spec, impl.spec, args.timeout) for spec in cases)
    isolate = args.isolate if args.isolate is not None else device.startswith("cuda")
    if not isolate:
        return (run_case(spec, impl, baseline, device, args.cuda_graph) for spec in cases)
    from harness.run.isolate import run_isolated

    base = baseline and baseline.spec
    devices = _devices(device, args.jobs)
    return run_isolated(cases, impl.spec, base, devices, args.timeout, args.cuda_graph)


def _devices(device: str, jobs: int | None) -> list[str]:
    """One worker per visible GPU by default; ``--jobs`` overrides the count."""
    if not device.startswith("cuda"):
        return [device] * max(1, jobs or 1)
    if ":" in device:
        return [device]
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{i % count}" for i in range(jobs or count)]


def cmd_validate(args: argparse.Namespace) -> int:
    count = 0
    for file in case_mod.iter_case_files(args.paths):
        count += len(case_mod.load_file(file))
    print(f"{count} cases OK")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    tiers = set(TIERS) if not args.tier else _tiers(args.tier, "cuda")
    for spec in load_selected(args.paths, tiers, args.keyword):
        print(
            f"{spec.id}  [{spec.tier}] B={spec.B} H={spec.H} HV={spec.HV} K={spec.K} "
            f"V={spec.V} {spec.act_dtype}/{spec.state_dtype} {spec.layout.state_layout}"
            f" steps={spec.steps}"
        )
    return EXIT_OK


def cmd_impls(args: argparse.Namespace) -> int:
    for name in available_impls():
        try:
            load_implementation(name)
            print(f"{name:12} available")
        except ImplError as exc:
            print(f"{name:12} unavailable: {exc}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdn-harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run cases, write a report, exit 1 on any violation")
    run.add_argument("paths", nargs="*", default=["cases"], help="files, folders or file::case")
    run.add_argument("--impl", default="packed", help="implementation under test (SPEC)")
    run.add_argument("--baseline", default="baseline", help="baseline SPEC, or 'none'")
    run.add_argument("-k", dest="keyword", help="select cases by expression over their ids")
    run.add_argument("--tier", action="append", choices=[*TIERS, "all"], help="repeatable")
    run.add_argument("--report-dir", default="reports", help="parent folder of run reports")
    run.add_argument("--run-name", help="report subfolder (default: run-<timestamp>)")
    run.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    run.add_argument(
        "--cuda-graph",
        action="store_true",
        help="capture each implementation once, replay with new inputs and padding",
    )
    run.add_argument("--jobs", type=int, help="isolated workers (default: one per GPU)")
    run.add_argument(
        "--sanitize",
        action="store_true",
        help="run each selected case under compute-sanitizer memcheck (CUDA)",
    )
    run.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    run.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run cases in a worker process that may crash (default: on CUDA)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=default_timeout(),
        help="per-case timeout in seconds with --isolate (default 600)",
    )
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check case files against the schema")
    val.add_argument("paths", nargs="+")
    val.set_defaults(func=cmd_validate)

    lst = sub.add_parser("list", help="list expanded cases with their ids")
    lst.add_argument("paths", nargs="*", default=["cases"])
    lst.add_argument("-k", dest="keyword")
    lst.add_argument("--tier", action="append", choices=[*TIERS, "all"])
    lst.set_defaults(func=cmd_list)

    imp = sub.add_parser("impls", help="list implementations and whether they load")
    imp.set_defaults(func=cmd_impls)
    _register_optional(sub)
    return parser


def _register_optional(sub) -> None:
    """Subcommands that live in their own modules (fuzz, bench)."""
    import importlib

    for name in ("harness.fuzz.command", "harness.bench.command"):
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a broken optional module must not take the CLI down
            print(f"warning: {name} unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        module.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except case_mod.CaseFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (ImplError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except BrokenPipeError:  # `gdn-harness list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
