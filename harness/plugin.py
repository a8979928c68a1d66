"""pytest plugin: YAML case files under a ``cases`` folder become test items.

Items are ``file.yaml::case[variant]`` in file order, so pytest-xdist
workers agree on the collection. A failing item shows its violations, the
YAML line of the case and the command that reruns it. Options: ``--impl``,
``--baseline``, ``--report-dir``, ``--tier``; cases of a tier this machine
cannot run are skipped with the reason.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from harness.core.spec import CaseSpec
from harness.core.tiers import TIERS
from harness.report import ResultLog, default_run_name, write_summaries
from harness.run.result import CaseFailed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gdn-harness")
    group.addoption("--impl", default="packed", help="implementation under test (SPEC)")
    group.addoption("--baseline", default="baseline", help="baseline SPEC, or 'none'")
    group.addoption("--report-dir", default=None, help="write a run report under this folder")
    group.addoption(
        "--tier",
        action="append",
        choices=[*TIERS, "all"],
        default=None,
        help="case tiers to collect (default: all; unrunnable ones skip)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"tier_{tier}: a gdn-harness case of tier {tier}")
    report_dir = config.getoption("--report-dir")
    if report_dir and not hasattr(config, "workerinput"):
        run = Path(report_dir) / default_run_name()
        config._gdn_report_dir = str(run)  # type: ignore[attr-defined]
    elif report_dir:
        config._gdn_report_dir = config.workerinput["gdn_report_dir"]  # type: ignore[attr-defined]
    if hasattr(config, "workerinput"):
        _pin_worker_gpu(config)


def pytest_configure_node(node) -> None:  # pytest-xdist hook: share the run folder
    node.workerinput["gdn_report_dir"] = getattr(node.config, "_gdn_report_dir", None)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` on a GPU machine: one worker per visible GPU."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else None


def _pin_worker_gpu(config: pytest.Config) -> None:
    """Each xdist worker owns one GPU (gw0 -> cuda:0, ...); one GPU serves all."""
    import torch

    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(worker[2:] or 0) % torch.cuda.device_count())


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix in (".yaml", ".yml") and "cases" in file_path.parts[:-1]:
        return CaseFile.from_parent(parent, path=file_path)
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    run_dir = getattr(session.config, "_gdn_report_dir", None)
    if run_dir and not hasattr(session.config, "workerinput") and Path(run_dir).exists():
        opt = session.config.getoption
        write_summaries(run_dir, {"impl": opt("--impl"), "baseline": opt("--baseline")})


@cache
def _implementation(spec: str):
    from harness.impls.registry import load_implementation

    return load_implementation(spec)


class CaseFile(pytest.File):
    def collect(self):
        from harness.cases.load import CaseFileError, load_file

        try:
            specs = load_file(self.path)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        tiers = self.config.getoption("--tier")
        wanted = set(TIERS) if not tiers or "all" in tiers else set(tiers)
        for spec in specs:
            if spec.tier in wanted:
                yield CaseItem.from_parent(self, name=spec.name, spec=spec)


class CaseItem(pytest.Item):
    def __init__(self, *, spec: CaseSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.add_marker(getattr(pytest.mark, f"tier_{spec.tier}"))

    def runtest(self) -> None:
        from harness.report import console_failure
        from harness.run.runner import run_case

        opt = self.config.getoption
        impl = _implementation(opt("--impl"))
        baseline = None if opt("--baseline") == "none" else _implementation(opt("--baseline"))
        result = run_case(self.spec, impl, baseline)
        run_dir = getattr(self.config, "_gdn_report_dir", None)
        if run_dir:
            ResultLog(run_dir).append(result)
        if result.status == "skipped":
            pytest.skip(result.reason)
        if result.failed:
            raise CaseFailed(console_failure(result))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.spec.line - 1, f"{self.spec.file}::{self.spec.name}"
