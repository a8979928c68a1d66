"""``gdn-harness fuzz``: draw cases, shrink the first failure, save it as a regression.

Hand-written cases find the bugs someone thought of; this finds the rest and
turns each one into a YAML case automatically. Hypothesis draws cases from
:func:`harness.fuzz.strategies.case_specs` and runs the three-way comparison of
:func:`harness.run.runner.run_case` on each. On the first failure Hypothesis
shrinks the case to a minimal one, which is re-run, written to
``cases/regressions/fuzz-<impl>-<hash>.yaml`` of the project (found from
the current directory up; ``--save-dir`` says otherwise) with only the
fields that differ from the defaults and a header saying what failed, the
seed and the command that found it, loaded back and re-run from the file,
so what is saved is known to reproduce. Exit codes: 0 nothing
failed, 1 a failure was found and saved, 2 bad usage.

Time is bounded twice: ``--budget`` stops *generating* new examples after
that many seconds; ``--shrink-budget`` stops *running* new shrink candidates
after that many seconds of shrinking (Hypothesis then finishes with the
smallest failure found so far, from a cache of verdicts). Progress goes to
stderr, one line per example.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from hypothesis import Verbosity, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from harness import cases as case_mod
from harness.core import options
from harness.core.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from harness.core.spec import CaseSpec
from harness.core.tiers import TIERS, tier_unrunnable
from harness.fuzz import profiles
from harness.fuzz.families import families, family_pool, pool_dir
from harness.fuzz.strategies import case_specs, describe
from harness.impls.registry import Implementation, ImplError, load_implementation
from harness.report import console_failure
from harness.run.result import SKIPPED, CaseFailed, CaseResult, Violation
from harness.run.runner import default_device, run_case

DEFAULT_SHRINK_BUDGET = 120.0
HEADER_VIOLATIONS = 6  # violation lines quoted in a saved file's header
FLAKY_CHECKS = ("determinism",)  # failures that need not repeat on every run
FLAKY_RUNS = 3  # runs a flaky failure must fail to count while shrinking / reproducing
STOPPED_BY_ANOTHER_JOB = "another job's failure"  # stop reason under --jobs


class BudgetSpent(BaseException):
    """Raised from inside the test body to stop Hypothesis generating.

    A BaseException, not an Exception, so that Hypothesis lets it through
    instead of treating it as a failure to shrink."""


@dataclass(frozen=True)
class FuzzOptions:
    """What one fuzz run does (the CLI's arguments, for programmatic use)."""

    impl: str
    baseline: str | None = "baseline"
    pad: str | None = None  # --pad / --pad-output: the conventions of a plain callable
    pad_output: str | None = None
    max_examples: int | None = None  # None: the profile's
    budget: float | None = None  # seconds of generation; None: the profile's
    shrink_budget: float = DEFAULT_SHRINK_BUDGET
    seed: int | None = None
    save_dir: Path | None = None  # None: cases/regressions of the project (regressions_dir)
    profile: str = profiles.DEFAULT
    tier: str = "cpu"
    device: str | None = None
    quiet: bool = False
    families: int | None = None  # pool size (harness.fuzz.families); None: the profile's
    family_seed: int = 0
    jobs: int = 1  # parallel fuzz processes (harness.fuzz.jobs)
    job: int | None = None  # this process's index among them
    stop_file: Path | None = None  # generation stops once this file exists
    report_json: Path | None = None  # where the report is written as JSON


@dataclass(frozen=True)
class _Verdict:
    """What running one case said, kept so that replays cost nothing.

    ``kinds`` holds ``(check, role)`` of every violation (role: impl,
    baseline, pair or harness): shrinking keeps only candidates that fail
    the way the first failure did, so it cannot slip to another bug.
    """

    failed: bool
    status: str
    summary: str
    seconds: float
    kinds: tuple[tuple[str, str], ...] = ()


@dataclass
class FuzzReport:
    """What a fuzz run found."""

    examples: int = 0  # test-body calls, shrinking included
    generated: int = 0  # calls before the first failure
    elapsed_s: float = 0.0
    seed_text: str = ""
    stop_reason: str = ""  # max-examples, budget, failure
    minimal: CaseSpec | None = None  # the shrunk failing case, as drawn
    saved: Path | None = None
    result: CaseResult | None = None  # the saved case re-run from its file
    reproduced: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.minimal is not None

    def summary(self) -> dict:
        """Counts and outcome as plain data (``--report-json``)."""
        return {
            "examples": self.examples,
            "generated": self.generated,
            "elapsed_s": self.elapsed_s,
            "seed": self.seed_text,
            "stop_reason": self.stop_reason,
            "failed": self.failed,
            "saved": None if self.saved is None else str(self.saved),
            "reproduced": self.reproduced,
            "notes": self.notes,
        }


def impl_file_part(spec: str) -> str:
    """An implementation spec as a file-name part (``a.b:fn`` -> ``a.b-fn``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec).strip("-.") or "impl"


def case_hash(spec: CaseSpec) -> str:
    """A short hash of what a case is (every field, not where it is written)."""
    blank = replace(spec, file="", name="fuzz", line=0, field_lines=())
    return hashlib.sha256(case_mod.case_to_yaml(blank, full=True).encode()).hexdigest()[:10]


def _one_line(v: Violation) -> str:
    """A violation as one (long) line, its text whole: a traceback is summed up
    by its last line, other lines are joined."""
    lines = [ln.strip() for ln in v.message.splitlines() if ln.strip()]
    text = lines[-1] if lines and lines[0].startswith("Traceback") else " ".join(lines)
    step = f" step {v.step}" if v.step is not None else ""
    return f"[{v.check}] {v.who}{step}: {text}"


def _first_lines(result: CaseResult, limit: int = HEADER_VIOLATIONS) -> list[str]:
    lines = [_one_line(v) for v in result.violations[:limit]]
    if len(result.violations) > limit:
        lines.append(f"... and {len(result.violations) - limit} more violations")
    return lines or [f"{result.status}: {result.reason}"]


class Fuzzer:
    """One fuzz run: the Hypothesis test body, its bookkeeping and the saving."""

    def __init__(
        self,
        opts: FuzzOptions,
        impl: Implementation,
        baseline: Implementation | None,
        stream: TextIO | None = None,
    ) -> None:
        self.opts, self.impl, self.baseline = opts, impl, baseline
        self.device = opts.device or default_device()
        self.stream = stream or sys.stderr
        self.cache: dict[CaseSpec, _Verdict] = {}
        self.report = FuzzReport()
        self.start = 0.0
        self.generate_end: float | None = None
        self.shrink_end: float | None = None
        self.last_failure: CaseSpec | None = None
        self.target: tuple[str, str] | None = None  # (check, role) being shrunk
        self.seed, self.report.seed_text = self._seed_plan()

    # --- settings ------------------------------------------------------------
    def _base(self) -> settings:
        return profiles.get_settings(self.opts.profile)

    @property
    def pool_size(self) -> int:
        if self.opts.families is not None:
            return self.opts.families
        return profiles.FAMILY_POOLS.get(self.opts.profile, 0)

    def _seed_plan(self) -> tuple[int | None, str]:
        if self.opts.seed is not None:
            return self.opts.seed, str(self.opts.seed)
        if self._base().derandomize:
            return None, f"derandomized ({self.opts.profile} profile)"
        drawn = random.SystemRandom().randrange(2**32)
        return drawn, str(drawn)

    def settings(self) -> settings:
        """The profile's settings, made fit for slow, budgeted examples."""
        base = self._base()
        kwargs: dict = {
            "deadline": None,
            "suppress_health_check": tuple(set(base.suppress_health_check) | set(profiles.SLOW_OK)),
            "report_multiple_bugs": False,
            "verbosity": Verbosity.quiet,
            "phases": tuple(p for p in base.phases if p in profiles.PHASES),
            "print_blob": False,
        }
        if self.opts.max_examples is not None:
            kwargs["max_examples"] = self.opts.max_examples
        if self.seed is not None:
            kwargs["derandomize"] = False
        if self.pool_size and isinstance(base.database, DirectoryBasedExampleDatabase):
            sub = pool_dir(self.opts.tier, self.opts.family_seed, self.pool_size)
            kwargs["database"] = DirectoryBasedExampleDatabase(base.database.path / sub)
        return settings(base, **kwargs)

    def budget(self) -> float | None:
        if self.opts.budget is not None:
            return self.opts.budget
        return profiles.FUZZ_BUDGETS.get(self.opts.profile)

    # --- the test body ---------------------------------------------------------
    def check(self, spec: CaseSpec) -> None:
        """Run one drawn case; raise CaseFailed if it fails (Hypothesis shrinks)."""
        now = time.monotonic()
        shrinking = self.shrink_end is not None
        if not shrinking and self.generate_end is not None and now > self.generate_end:
            raise BudgetSpent
        if not shrinking and self.opts.stop_file is not None and self.opts.stop_file.exists():
            self.report.stop_reason = STOPPED_BY_ANOTHER_JOB
            raise BudgetSpent
        self.report.examples += 1
        if not shrinking:
            self.report.generated += 1
        verdict = self.cache.get(spec)
        if verdict is None:
            if shrinking and now > self.shrink_end:
                self._show(spec, "not run (shrink budget spent)", shrinking)
                return
            verdict = self._run(spec)
        same = verdict.failed and (self.target is None or self.target in verdict.kinds)
        outcome = verdict.status if same or not verdict.failed else "fails otherwise"
        self._show(spec, f"{outcome} ({verdict.seconds:.2f}s)", shrinking)
        if not same:
            return
        if self.target is None:
            self.target = verdict.kinds[0]
            self.shrink_end = time.monotonic() + self.opts.shrink_budget
            if self.opts.stop_file is not None:  # the other jobs stop drawing while this shrinks
                self.opts.stop_file.touch()
            self._say(f"failure: {verdict.summary}")
            self._say(f"shrinking (keeping [{self.target[0]}] by {self.target[1]}) ...")
        self.last_failure = spec
        raise CaseFailed(verdict.summary)

    def _run(self, spec: CaseSpec) -> _Verdict:
        t0 = time.perf_counter()
        result = run_case(spec, self.impl, self.baseline, self.device)
        if self.target is not None and self.target[0] in FLAKY_CHECKS:
            # A flaky failure shrinks towards cases that barely fail; keep only
            # candidates that fail every time, so that the saved case reproduces.
            for _ in range(FLAKY_RUNS - 1):
                again = run_case(spec, self.impl, self.baseline, self.device)
                if not again.failed:
                    result = again
                    break
        summary = _first_lines(result, 1)[0]
        kinds = tuple(dict.fromkeys((v.check, self._role(v.who)) for v in result.violations))
        if result.failed and not kinds:  # failed without a violation: still one kind
            kinds = (("crash", "harness"),)
        seconds = time.perf_counter() - t0
        verdict = _Verdict(result.failed, result.status, summary, seconds, kinds)
        if result.status == SKIPPED:
            verdict = replace(verdict, summary=result.reason)
        self.cache[spec] = verdict
        return verdict

    def _role(self, who: str) -> str:
        if who == self.impl.spec:
            return "impl"
        if self.baseline is not None and who == self.baseline.spec:
            return "baseline"
        return "pair" if " vs " in who else "harness"

    def _show(self, spec: CaseSpec, outcome: str, shrinking: bool) -> None:
        if self.opts.quiet:
            return
        phase = "shrink" if shrinking else "search"
        elapsed = time.monotonic() - self.start
        self._say(
            f"#{self.report.examples:<4} {elapsed:7.1f}s {phase} {describe(spec)} -> {outcome}"
        )

    def _say(self, text: str) -> None:
        who = "fuzz" if self.opts.job is None else f"fuzz[{self.opts.job}]"
        print(f"{who}: {text}", file=self.stream, flush=True)

    # --- the run ---------------------------------------------------------------
    def _test(self):
        def fuzz_case(spec: CaseSpec) -> None:
            self.check(spec)

        # Separate example-database entries (and derandomized sequences) per implementation.
        fuzz_case._hypothesis_internal_add_digest = self.impl.spec.encode()  # type: ignore[attr-defined]
        tier = self.opts.tier
        pool = family_pool(tier, self.opts.family_seed, self.pool_size) if self.pool_size else ()
        test = given(spec=case_specs(tier, families=families(tier, pool)))(fuzz_case)
        test = self.settings()(test)
        return seed(self.seed)(test) if self.seed is not None else test

    def run(self) -> FuzzReport:
        """Fuzz until the example or time budget is spent, or a failure is saved."""
        self.start = time.monotonic()
        budget = self.budget()
        self.generate_end = None if budget is None else self.start + budget
        self._say(
            f"impl {self.impl.spec}, baseline {self.baseline.spec if self.baseline else 'none'}, "
            f"tier {self.opts.tier} on {self.device}, profile {self.opts.profile}, "
            f"seed {self.report.seed_text}, max examples {self.settings().max_examples}, "
            f"budget {'none' if budget is None else f'{budget:g}s'}"
        )
        try:
            self._test()()
            self.report.stop_reason = "max-examples"
        except BudgetSpent:
            self.report.stop_reason = self.report.stop_reason or "budget"
        except Exception:
            if self.last_failure is None:
                raise  # not the implementation failing: a bug of the harness or Hypothesis
            self.report.stop_reason = "failure"
        self.report.elapsed_s = time.monotonic() - self.start
        if self.last_failure is not None:
            self._save(self.last_failure)
        return self.report

    # --- saving ----------------------------------------------------------------
    def command(self) -> str:
        """The command line that repeats this fuzz run."""
        baseline = self.baseline.spec if self.baseline else "none"
        cmd = ["gdn-harness", "fuzz", *search_args(self.opts, self.seed, baseline)]
        return " ".join(shlex.quote(c) for c in cmd)

    def rerun_command(self, path: Path) -> str:
        base = self.baseline.spec if self.baseline else "none"
        cmd = ["gdn-harness", "run", case_mod.display_path(path), "--impl", self.impl.spec]
        cmd += ["--baseline", base, *self.impl.conventions.as_options()]
        return " ".join(shlex.quote(c) for c in cmd)

    def _header(self, result: CaseResult, path: Path) -> str:
        r = self.report
        date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"Regression case found by `gdn-harness fuzz` on {date}.",
            f"Failed: {self.impl.spec} (baseline "
            f"{self.baseline.spec if self.baseline else 'none'}), device {self.device}:",
            *(f"  {line}" for line in _first_lines(result)),
            f"Seed: {r.seed_text}. Found after {r.generated} example(s), then shrunk by "
            f"Hypothesis in {r.examples - r.generated} step(s).",
            f"Found by: {self.command()}",
            f"Rerun: {self.rerun_command(path)}",
        ]
        return "\n".join(lines)

    def _save(self, minimal: CaseSpec) -> None:
        """Re-run the minimal case, write it, load it back and re-run it from the file."""
        r = self.report
        r.minimal = minimal
        digest = case_hash(minimal)
        spec = replace(minimal, name=f"fuzz_{digest}")
        save_dir = self.opts.save_dir or case_mod.regressions_dir()
        path = save_dir / f"fuzz-{impl_file_part(self.impl.spec)}-{digest}.yaml"
        first = run_case(spec, self.impl, self.baseline, self.device)
        if not first.failed:
            r.notes.append("the minimal case passed when re-run: the implementation is flaky")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{os.getpid()}")  # whole files only, even if
        part.write_text(case_mod.case_to_yaml(spec, self._header(first, path)), encoding="utf-8")
        os.replace(part, path)  # two jobs saved the same case at once
        r.saved = path
        try:
            loaded = case_mod.load_file(path)
        except case_mod.CaseFileError as exc:  # case_to_yaml wrote what load_file refuses
            r.notes.append(f"the saved file does not load (harness.cases bug): {exc}")
            r.result = first
            return
        if len(loaded) != 1 or not case_mod.same_case(loaded[0], spec):
            r.notes.append(f"{path} does not load back to the same case (harness.cases bug)")
        runs = FLAKY_RUNS if self.target and self.target[0] in FLAKY_CHECKS else 1
        for attempt in range(1, runs + 1):
            r.result = run_case(loaded[0], self.impl, self.baseline, self.device)
            if r.result.failed:
                r.reproduced = True
                if attempt > 1:
                    r.notes.append(f"the saved case failed on run {attempt} of {runs} only")
                break
        if not r.reproduced:
            r.notes.append(f"the case loaded from the saved file passed {runs} run(s)")


def search_args(o: FuzzOptions, seed_: int | None, baseline: str) -> list[str]:
    """The options that decide what a fuzz run draws and runs, those that differ
    from their defaults: what repeats a run (``Fuzzer.command``) and what each
    job of ``--jobs`` is given (``harness.fuzz.jobs``)."""
    args = ["--impl", o.impl, "--baseline", baseline]
    optional = {
        "--pad": o.pad,
        "--pad-output": o.pad_output,
        "--seed": seed_,
        "--profile": None if o.profile == profiles.DEFAULT else o.profile,
        "--max-examples": o.max_examples,
        "--budget": None if o.budget is None else f"{o.budget:g}",
        "--tier": None if o.tier == "cpu" else o.tier,
        "--families": o.families,
        "--family-seed": o.family_seed or None,
    }
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    return args


def fuzz(opts: FuzzOptions, stream: TextIO | None = None) -> FuzzReport:
    """Run one fuzz session (ImplError for an unknown implementation)."""
    impl = load_implementation(opts.impl).with_options(opts.pad, opts.pad_output)
    baseline = None if opts.baseline in (None, "none") else load_implementation(opts.baseline)
    return Fuzzer(opts, impl, baseline, stream).run()


# --------------------------------------------------------------------------
# CLI


def _options(args: argparse.Namespace) -> FuzzOptions:
    return FuzzOptions(
        impl=args.impl,
        baseline=args.baseline,
        pad=args.pad,
        pad_output=args.pad_output,
        max_examples=args.max_examples,
        budget=args.budget,
        shrink_budget=args.shrink_budget,
        seed=args.seed,
        save_dir=None if args.save_dir is None else Path(args.save_dir),
        profile=args.profile,
        tier=args.tier,
        device=args.device,
        quiet=args.quiet,
        families=args.families,
        family_seed=args.family_seed,
        jobs=args.jobs,
        job=args.job,
        stop_file=None if args.stop_file is None else Path(args.stop_file),
        report_json=None if args.report_json is None else Path(args.report_json),
    )


def _usage_problem(opts: FuzzOptions) -> str | None:
    if opts.profile not in (profiles.DEFAULT, *profiles.PROFILES):
        return f"unknown Hypothesis profile {opts.profile!r} (from ${profiles.PROFILE_ENV}?)"
    if opts.max_examples is not None and opts.max_examples < 1:
        return "--max-examples must be at least 1"
    if opts.budget is not None and opts.budget <= 0:
        return "--budget must be positive"
    if opts.shrink_budget < 0:
        return "--shrink-budget must not be negative"
    if opts.seed is not None and opts.seed < 0:
        return "--seed must not be negative"
    if opts.families is not None and opts.families < 0:
        return "--families must not be negative"
    if opts.family_seed < 0:
        return "--family-seed must not be negative"
    if opts.jobs < 1:
        return "--jobs must be at least 1"
    return tier_unrunnable(opts.tier, opts.device or default_device())


def _print_outcome(report: FuzzReport, rerun: str) -> None:
    if not report.failed:
        print(
            f"fuzz: no failure in {report.examples} examples ({report.elapsed_s:.1f}s, "
            f"stopped by {report.stop_reason}; seed {report.seed_text})"
        )
        return
    assert report.result is not None and report.saved is not None
    print(console_failure(report.result))
    print(
        f"fuzz: FAILED after {report.generated} examples; shrunk in "
        f"{report.examples - report.generated} steps ({report.elapsed_s:.1f}s; "
        f"seed {report.seed_text})"
    )
    for note in report.notes:
        print(f"fuzz: warning: {note}")
    print(f"fuzz: minimal case saved to {case_mod.display_path(report.saved)}")
    print(f"fuzz: rerun with: {rerun}")


def cmd_fuzz(args: argparse.Namespace) -> int:
    """The ``fuzz`` subcommand: 0 nothing failed, 1 a failure saved, 2 bad usage."""
    opts = _options(args)
    problem = _usage_problem(opts)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        impl = load_implementation(opts.impl).with_options(opts.pad, opts.pad_output)
        baseline = None if opts.baseline == "none" else load_implementation(opts.baseline)
    except ImplError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if opts.jobs > 1:
        from harness.fuzz.jobs import run_jobs

        return run_jobs(opts)
    fuzzer = Fuzzer(opts, impl, baseline)
    report = fuzzer.run()
    rerun = fuzzer.rerun_command(report.saved) if report.saved else ""
    _print_outcome(report, rerun)
    if opts.report_json is not None:
        opts.report_json.write_text(json.dumps(report.summary()), encoding="utf-8")
    return EXIT_FAIL if report.failed else EXIT_OK


def register(subparsers) -> None:
    """Add the ``fuzz`` subcommand to the ``gdn-harness`` parser."""
    p = subparsers.add_parser(
        "fuzz",
        help="run drawn cases, shrink the first failure, save it as a YAML regression case",
        description=(
            "Draw cases across the whole case space, run the three-way comparison on each, "
            "and on the first failure let Hypothesis shrink it, then save the minimal case "
            "as a YAML regression file (checked to reproduce) and exit 1. Exit 0 when "
            "nothing fails, 2 on bad usage. One line per example goes to stderr."
        ),
    )
    options.add_to_argparse(p, "impl", "baseline", "pad", "pad_output")
    p.add_argument(
        "--max-examples", type=int, help="examples to draw, per job (default: the profile's)"
    )
    p.add_argument("--budget", type=float, help="seconds after which no new example is drawn")
    p.add_argument(
        "--shrink-budget",
        type=float,
        default=DEFAULT_SHRINK_BUDGET,
        help=f"seconds of shrinking a failure (default {DEFAULT_SHRINK_BUDGET:g})",
    )
    p.add_argument("--seed", type=int, help="seed of the draws (default: random, printed)")
    p.add_argument(
        "--save-dir",
        help="where the minimal case is written (default: cases/regressions of the project, "
        "the nearest folder up from here holding gdn-harness's pyproject.toml or a .git)",
    )
    p.add_argument(
        "--profile",
        choices=[profiles.DEFAULT, *profiles.PROFILES],
        default=profiles.profile_from_env(),
        help=f"Hypothesis profile (default: ${profiles.PROFILE_ENV} or 'default')",
    )
    p.add_argument("--tier", choices=TIERS, default="cpu", help="size range of drawn cases")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per example")
    p.add_argument(
        "--families",
        type=int,
        metavar="N",
        help="draw most examples from a pool of N kernel families, so that they reuse "
        "compiled kernels (0: every example draws its own; default: 32 with the nightly "
        "profile, else 0)",
    )
    p.add_argument(
        "--family-seed", type=int, default=0, metavar="N", help="seed of the family pool"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="fuzz in N processes, each with its own seed and family pool; the first "
        "failure found stops the others",
    )
    p.add_argument("--job", type=int, help=argparse.SUPPRESS)  # set by --jobs for its workers
    p.add_argument("--stop-file", help=argparse.SUPPRESS)
    p.add_argument("--report-json", help="write the run's counts and outcome here as JSON")
    p.set_defaults(func=cmd_fuzz)
