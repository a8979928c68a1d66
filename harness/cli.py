"""The gdn-harness command line (also python3 -m harness).

Differential correctness checks of the Gated DeltaNet packed decode kernel:
YAML cases run through an implementation, the baseline and a float64 oracle,
and every violation is reported.

A thin face over the engine: options shared with the pytest plugin come from
``harness.core.options``; loading, running and reporting live in their stage
packages. Nothing heavy is imported before a command needs it, so ``--help``,
``validate`` and ``list`` never wait for torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import options
from harness.core.exitcodes import EXIT_FAIL, EXIT_NO_TESTS, EXIT_OK, EXIT_USAGE
from harness.core.tiers import TIERS, runnable_tiers, tier_unrunnable

if TYPE_CHECKING:
    from harness.cases import CaseFileError
    from harness.core.spec import CaseSpec

DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
EPILOG = (
    "exit codes: 0 every selected case ran and nothing was violated; 1 a case failed or "
    "crashed; 2 bad usage or invalid case files (every error is listed); 5 nothing was "
    "tested (every selected case was skipped, or a requested tier cannot run here)."
)
# Subcommands in modules of their own, imported only when chosen (fuzz and
# bench import torch, fuzz also Hypothesis): name -> (module, one-line help).
PLUGGED = {
    "fuzz": (
        "harness.fuzz.command",
        "draw cases across the case space with Hypothesis, shrink the first failure and "
        "save it as a case file",
    ),
    "bench": (
        "harness.bench.command",
        "time packed, baseline and any --impl under CUDA-graph replay (needs a GPU)",
    ),
    "report": ("harness.report.command", "work with the report of a finished run"),
}
EXTRA_FOR = {"hypothesis": "fuzz"}  # a missing package -> the extra that installs it


class UsageError(Exception):
    """Bad command-line input that argparse cannot see (exit 2)."""


class NothingTested(Exception):
    """A run that would test nothing: each argument is a line saying why (exit 5)."""


class InvalidCaseFiles(Exception):
    """Every error found in the case files of one command (exit 2)."""

    def __init__(self, errors: list[CaseFileError], files: int) -> None:
        super().__init__(errors)
        self.errors = errors
        self.files = files  # case files looked at

    def lines(self, action: str) -> list[str]:
        bad = len({e.file for e in self.errors})
        n = len(self.errors)
        tail = f"{n} error{'s' * (n != 1)} in {bad} of {self.files} case file"
        return [f"error: {e}" for e in self.errors] + [f"{tail}{'s' * (self.files != 1)}; {action}"]


# --------------------------------------------------------------------------
# Loading: every error of every file, then one verdict


def _file_errors(exc: Exception) -> list[CaseFileError]:
    """The errors one failed load reports: one today; a loader that collects
    every bad case of a file raises a group (``errors`` or ``exceptions``)."""
    group = getattr(exc, "errors", None) or getattr(exc, "exceptions", None)
    return list(group) if isinstance(group, (list, tuple)) else [exc]  # type: ignore[list-item]


def _case_files(path: str) -> Iterator[Path | CaseFileError]:
    """The case files under one path, or the error of a path that does not exist."""
    from harness import cases as case_mod

    try:
        yield from case_mod.iter_case_files([path])
    except case_mod.CaseFileError as exc:
        yield exc


def load_checked(paths: Sequence[str]) -> tuple[list[CaseSpec], int]:
    """Cases under PATHS (files, folders or ``file.yaml::case`` ids) and the
    number of files named or found; :class:`InvalidCaseFiles` with every error
    when any is invalid, so that nothing runs on a half-read library."""
    from harness import cases as case_mod

    errors: list[CaseFileError] = []
    specs: list[CaseSpec] = []
    files = 0
    for entry in paths:
        file, sep, name = entry.partition("::")
        for path in _case_files(file):
            files += 1
            if isinstance(path, case_mod.CaseFileError):
                errors.append(path)
                continue
            try:
                found = case_mod.load_file(path)
            except case_mod.CaseFileError as exc:
                errors.extend(_file_errors(exc))
                continue
            if sep:
                found = [s for s in found if s.name == name]
                if not found:
                    msg = "no such case in the file"
                    errors.append(case_mod.CaseFileError(file, name, None, None, msg))
            specs.extend(found)
    if errors:
        raise InvalidCaseFiles(errors, files)
    return specs, files


def select(specs: list[CaseSpec], tiers: set[str] | None, keyword: str | None) -> list[CaseSpec]:
    from harness import cases as case_mod

    try:
        return case_mod.select(specs, tiers=tiers, keyword=keyword)
    except ValueError as exc:  # a malformed -k expression
        raise UsageError(str(exc)) from None


def load_selected(paths: Sequence[str], tiers: set[str] | None, keyword: str | None):
    """Load PATHS and select cases (``tiers`` None: every tier)."""
    return select(load_checked(paths)[0], tiers, keyword)


# --------------------------------------------------------------------------
# run


def _unrunnable_tiers(requested: list[str] | None, device: str) -> list[str]:
    """Lines for each explicitly requested tier that ``device`` cannot run."""
    wanted = options.wanted_tiers(requested, set())
    return [why for t in TIERS if t in wanted and (why := tier_unrunnable(t, device))]


def _cases(n: int) -> str:
    return f"{n} selected case{'s' * (n != 1)}"


def _tiers(specs: Iterable[CaseSpec]) -> set[str]:
    return {spec.tier for spec in specs}


def _nothing_tested(results: Counter, skips: Counter) -> str:
    reasons = "; ".join(f"{n} x {why}" for why, n in skips.most_common(3))
    total = sum(results.values())
    return f"nothing was tested: all {_cases(total)} were skipped ({reasons})"


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run.runner import default_device

    specs, _ = load_checked(args.paths)
    device = args.device or default_device()
    return _run(args, _run_selection(args, specs, device), device)


def _run_selection(args: argparse.Namespace, specs: list[CaseSpec], device: str):
    """The cases to run; :class:`NothingTested` when none can, :class:`UsageError`
    when the paths and -k select none."""
    cannot = _unrunnable_tiers(args.tier, device)
    if cannot:
        raise NothingTested(*(f"--tier: {line}" for line in cannot))
    matched = select(specs, None, args.keyword)
    tiers = options.wanted_tiers(args.tier, runnable_tiers(device))
    cases = [spec for spec in matched if spec.tier in tiers]
    if not cases and matched and not args.tier:
        why = "; ".join(tier_unrunnable(t, device) or "" for t in TIERS if t in _tiers(matched))
        raise NothingTested(f"the {_cases(len(matched))} cannot run here ({why})")
    if not cases:
        raise UsageError("no cases selected (check the paths, -k and --tier)")
    if not args.shard:
        return cases
    shard = args.shard.pick(cases)
    if not shard:
        raise NothingTested(f"shard {args.shard} of the {_cases(len(cases))} is empty")
    print(f"shard {args.shard}: {len(shard)} of the {_cases(len(cases))}", flush=True)
    return shard


def _run(args: argparse.Namespace, cases: list[CaseSpec], device: str) -> int:
    from harness.impls.registry import load_implementation
    from harness.report import ResultLog, run_dir
    from harness.run.session import run_cases

    impl = load_implementation(args.impl).with_options(args.pad, args.pad_output)
    baseline = None if args.baseline == "none" else load_implementation(args.baseline)
    _export_worker_options(args)
    if args.check_device is not None:
        from harness.check.device import resolve_check_device

        try:
            resolve_check_device(args.check_device, device)
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"--check-device: {exc}") from None
    try:
        report_dir = run_dir(args.report_dir, args.run_name)
    except ValueError as exc:  # a run name that is a path
        raise UsageError(str(exc)) from None
    meta = {
        "impl": impl.spec,
        "baseline": baseline and baseline.spec,
        "device": device,
        "cuda_graph": args.cuda_graph,
        **({"conventions": impl.conventions.as_dict()} if not impl.conventions.is_default else {}),
        **({"shard": str(args.shard)} if args.shard else {}),
    }
    try:
        results = run_cases(
            cases, impl, baseline, device, isolate=args.isolate, timeout=args.timeout,
            jobs=args.jobs, graph=args.cuda_graph, sanitize=args.sanitize,
        )  # fmt: skip
    except ValueError as exc:  # a combination that cannot work (--no-isolate --timeout)
        raise UsageError(str(exc)) from None
    log = ResultLog(report_dir, fresh=True)
    with _partial_on_signal(report_dir, meta):
        statuses, skips, failed_results = _consume(args, results, log, len(cases))
    return _finish(report_dir, meta, statuses, skips, failed_results)


def _export_worker_options(args: argparse.Namespace) -> None:
    """--check-device reaches the case workers through their environment."""
    if args.check_device is not None:
        os.environ["GDN_CHECK_DEVICE"] = args.check_device


def _consume(args, results, log, total: int):
    """Record and print each result as it comes; stop early with ``-x``."""
    from harness.report import console_failure, console_line
    from harness.report.progress import Progress

    statuses: Counter = Counter()
    skips: Counter = Counter()
    failed: list = []
    with Progress(total) as progress:
        for result in results:
            log.append(result)
            progress.advance(result.case.id)
            progress.write(console_line(result))
            statuses[result.status] += 1
            if result.status == "skipped":
                skips[result.reason] += 1
            if result.failed:
                failed.append(result)
                progress.write(console_failure(result))
                if args.exitfirst:
                    break
    return statuses, skips, failed


class _Interrupted(Exception):
    """SIGTERM, turned into an exception so the run's reports get written."""


@contextlib.contextmanager
def _partial_on_signal(report_dir: Path, meta: dict) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, write the reports from what ran, marked partial,
    and exit 130 / 143; the workers end with this process."""
    from harness.report import write_summaries

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise _Interrupted

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except (KeyboardInterrupt, _Interrupted) as exc:
        write_summaries(report_dir, meta, partial=True)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 143
        print(f"interrupted: partial reports in {report_dir}", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(report_dir, meta, statuses, skips, failed) -> int:
    from harness.report import failure_list, write_summaries

    c = write_summaries(report_dir, meta)["counts"]
    n_failed = c["failed"] + c["crashed"]
    if failed:
        print(failure_list(failed))
    print(f"{c['passed']} passed, {n_failed} failed, {c['skipped']} skipped (report: {report_dir})")
    if n_failed:
        return EXIT_FAIL
    if not c["passed"]:
        print(f"error: {_nothing_tested(statuses, skips)}", file=sys.stderr)
        return EXIT_NO_TESTS
    return EXIT_OK


# --------------------------------------------------------------------------
# validate, list, impls


def cmd_validate(args: argparse.Namespace) -> int:
    specs, files = load_checked(args.paths)
    print(f"{len(specs)} cases OK in {files} file{'s' * (files != 1)}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    specs, _ = load_checked(args.paths)
    cases = select(specs, options.wanted_tiers(args.tier, set(TIERS)), args.keyword)
    if args.shard:
        cases = args.shard.pick(cases)
    for spec in cases:
        print(
            f"{spec.id}  [{spec.tier}] B={spec.B} H={spec.H} HV={spec.HV} K={spec.K} "
            f"V={spec.V} {spec.act_dtype}/{spec.state_dtype} {spec.layout.state_layout}"
            f" steps={spec.steps}"
        )
    return EXIT_OK


def cmd_impls(args: argparse.Namespace) -> int:
    from harness.impls.registry import ImplError, available_impls, load_implementation

    for name in available_impls():
        try:
            load_implementation(name)
            print(f"{name:12} available")
        except ImplError as exc:
            print(f"{name:12} unavailable: {exc}")
    return EXIT_OK


# --------------------------------------------------------------------------
# The parser


def _add_paths(p: argparse.ArgumentParser, nargs: str, default: list[str] | None) -> None:
    what = "case files, folders of them, or file.yaml::case ids"
    if default:
        what += f" (default: {' '.join(default)})"
    kw: dict[str, Any] = {"default": default} if default else {}
    p.add_argument("paths", nargs=nargs, metavar="PATH", help=what, **kw)


# name -> (one-line help, description) of the subcommands defined here
COMMANDS = {
    "run": (
        "run cases, write a report, exit 1 on any violation",
        "Run the selected cases through the implementation under test, the baseline and "
        "the float64 oracle, print a line per case and the violations of failing ones, and "
        "write a report (results.jsonl, summaries, JUnit, HTML). Refuses to run (exit 2) "
        "while any case file is invalid, listing every error.",
    ),
    "validate": (
        "check case files: schema and semantic rules, every error listed",
        "Check case files against the schema and the rules it cannot express (HV a "
        "multiple of H, pool size, memory estimate...). Every error of every file is "
        "listed with its file, case, field and YAML line; exit 2 when there is any.",
    ),
    "list": (
        "list the selected cases with their ids, sizes and dtypes",
        "Print one line per selected case: its id (file.yaml::case[variant], as run and "
        "pytest take it), tier, sizes, dtypes, state layout and steps. Every tier is listed "
        "unless --tier says otherwise. Refuses (exit 2) while any case file is invalid, "
        "listing every error.",
    ),
    "impls": (
        "list impl names and whether each loads here",
        "List the impl names known here (built-ins, bundled adapters, names installed "
        "packages register) and whether each loads on this machine; for one that does "
        "not, why. Any module:function or path/to/file.py:function is an impl name too.",
    ),
}


def _parser(sub, name: str, **kw: Any) -> argparse.ArgumentParser:
    help_, description = COMMANDS[name]
    return sub.add_parser(name, help=help_, description=description, **kw)


def _add_run(sub) -> None:
    run = _parser(sub, "run", epilog=EPILOG)
    _add_paths(run, "*", ["cases"])
    options.add_to_argparse(run, "impl", "baseline", "keyword", "tier", "shard")
    options.add_to_argparse(run, "pad", "pad_output", "check_device")
    options.add_to_argparse(run, "report_dir", "run_name")
    run.add_argument(
        "--device", metavar="DEVICE", help="cpu, cuda or cuda:N (default: cuda when present)"
    )
    run.add_argument(
        "--cuda-graph",
        action="store_true",
        help="capture each implementation once, replay it with new inputs and padding",
    )
    run.add_argument(
        "--jobs", type=int, metavar="N", help="crash-isolated workers (default: one per GPU)"
    )
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
        help="run cases in crash-isolated workers with one BLAS thread each, as on CUDA "
        "(default: a worker process restarted when it dies; --no-isolate runs in this "
        "process)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="per-case limit in a worker process (default: $GDN_CASE_TIMEOUT or 600; "
        "refused with --no-isolate, where a hung case cannot be stopped)",
    )
    run.set_defaults(func=cmd_run)


def _add_validate(sub) -> None:
    val = _parser(sub, "validate")
    _add_paths(val, "+", None)
    val.set_defaults(func=cmd_validate)


def _add_list(sub) -> None:
    lst = _parser(sub, "list")
    _add_paths(lst, "*", ["cases"])
    every = {"tier": f"{options.TIER_CHOICES} (default: every tier)"}
    options.add_to_argparse(lst, "keyword", "tier", "shard", helps=every)
    lst.set_defaults(func=cmd_list)


def _add_impls(sub) -> None:
    imp = _parser(sub, "impls")
    imp.set_defaults(func=cmd_impls)


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is no option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _module_file(module: str) -> Path:
    """Where a harness module lives, found without importing its package."""
    return Path(__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")


def _add_plugged(sub, chosen: str | None) -> None:
    """Register the chosen plugged subcommand for real and list the others by
    name and help only; one whose module is absent is left out."""
    for name, (module, help_) in PLUGGED.items():
        if not _module_file(module).exists():  # not in this version of the harness
            continue
        if name != chosen:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            extra = EXTRA_FOR.get(exc.name or "")
            hint = f"; pip install 'gdn-harness[{extra}]'" if extra else ""
            print(f"error: gdn-harness {name} needs {exc.name}{hint}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser; of the plugged subcommands only the one ``argv``
    chooses is imported (build_parser() alone imports none)."""
    parser = argparse.ArgumentParser(prog="gdn-harness", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_validate, _add_list, _add_impls):
        add(sub)
    _add_plugged(sub, _chosen(argv))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    from harness.impls.registry import ImplError

    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except InvalidCaseFiles as exc:
        action = "nothing was run" if args.command == "run" else "fix them and try again"
        print("\n".join(exc.lines(action)), file=sys.stderr)
    except (ImplError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except NothingTested as exc:
        for line in exc.args:
            print(f"error: {line}", file=sys.stderr)
        print(f"error: nothing was tested (exit {EXIT_NO_TESTS})", file=sys.stderr)
        return EXIT_NO_TESTS
    except BrokenPipeError:  # `gdn-harness list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
