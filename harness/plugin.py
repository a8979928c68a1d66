"""pytest plugin: gdn-harness case files become test items.

A thin face over the engine, like the command line, with the same options
(``harness.core.options``): ``--impl``, ``--baseline``, ``--tier``,
``--gdn-shard``, ``--report-dir``, ``--run-name``; pytest's own ``-k``
selects by case id as ``gdn-harness run -k`` does.

Only gdn-harness case files are collected, so that the plugin, which loads
into every pytest session of a venv it is installed in, cannot take over
another project's YAML: a ``.yaml``/``.yml`` file is one when a folder above
it holds the gdn-harness case schema (``schema.json`` with the schema's
``$id``; the repository's ``cases/schema.json`` is a link to it), when its
name ends in ``.gdn.yaml``/``.gdn.yml``, or when it is named on the command
line.

Items are ``file.yaml::case[variant]`` in file order, so pytest-xdist
workers agree on the collection. A failing item shows its violations, the
YAML line of the case and the command that reruns it; an invalid file is
one item, ``file.yaml::invalid-case-file``, that errors with every message
while the other files run. Cases of a tier this machine
cannot run are skipped with the reason; a session in which every case was
skipped and nothing else ran exits 5, as the command line does.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.core import options
from harness.core.exitcodes import EXIT_NO_TESTS
from harness.core.tiers import TIERS

SCHEMA_FILE = "schema.json"
SUFFIXES = (".gdn.yaml", ".gdn.yml")
INVALID = "invalid-case-file"  # the item that stands for a file that does not load


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gdn-harness", "gdn-harness case files")
    options.add_to_pytest(group, *options.SHARED)


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"tier_{tier}: a gdn-harness case of tier {tier}")
    report_dir = config.getoption("report_dir")
    if report_dir and hasattr(config, "workerinput"):
        config._gdn_report_dir = config.workerinput["gdn_report_dir"]  # type: ignore[attr-defined]
    elif report_dir:  # the controller starts the run folder; workers append to it
        from harness.report import run_dir, start_run

        try:
            folder = run_dir(report_dir, config.getoption("run_name"))
        except ValueError as exc:
            raise pytest.UsageError(f"--run-name: {exc}") from None
        start_run(folder)
        config._gdn_report_dir = str(folder)  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # pytest-xdist hook: share the run folder
    node.workerinput["gdn_report_dir"] = getattr(node.config, "_gdn_report_dir", None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` on a GPU machine: one worker per visible GPU (asked only
    in a session that collects gdn-harness cases, to keep torch out of others)."""
    if not any(_is_case_path(Path(a)) for a in config.args if Path(a).exists()):
        return None
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else None


# --------------------------------------------------------------------------
# Which files are ours


@cache
def _schema_id() -> str:
    text = Path(__file__).with_name("cases").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)["$id"]


@cache
def _marks_cases(folder: Path) -> bool:
    """Whether ``folder`` or a folder above it holds the gdn-harness case schema."""
    schema = folder / SCHEMA_FILE
    if schema.is_file():
        try:
            if json.loads(schema.read_text(encoding="utf-8")).get("$id") == _schema_id():
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return folder.parent != folder and _marks_cases(folder.parent)


def _is_case_path(path: Path) -> bool:
    if path.is_dir():
        return _marks_cases(path.resolve())
    return path.suffix in (".yaml", ".yml") and (
        path.name.endswith(SUFFIXES) or _marks_cases(path.resolve().parent)
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if parent.session.isinitpath(file_path) or _is_case_path(file_path):
        return CaseFile.from_parent(parent, path=file_path)
    return None


# --------------------------------------------------------------------------
# Selection: tiers at collection, shards over the whole collection


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("shard")
    if shard is None:
        return
    cases = [item for item in items if isinstance(item, CaseItem)]
    keep = {id(item) for item in shard.pick(cases)}
    dropped = [item for item in cases if id(item) not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not isinstance(item, CaseItem) or id(item) in keep]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run_dir = getattr(config, "_gdn_report_dir", None)
    if run_dir and not hasattr(config, "workerinput") and Path(run_dir).exists():
        from harness.report import write_summaries

        opt = config.getoption
        meta = {"impl": opt("impl"), "baseline": opt("baseline")}
        if opt("shard"):
            meta["shard"] = str(opt("shard"))
        ended_early = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop)
        write_summaries(run_dir, meta, partial=ended_early)
    if exitstatus == pytest.ExitCode.OK and _nothing_tested(session):
        session.exitstatus = EXIT_NO_TESTS


def _nothing_tested(session: pytest.Session) -> bool:
    """Every gdn-harness case was skipped and no other test ran."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(session.config, "workerinput"):
        return False
    stats = reporter.stats
    ran = [
        r for key in ("passed", "failed", "error", "xfailed", "xpassed") for r in stats.get(key, [])
    ]
    skipped = [r for r in stats.get("skipped", []) if getattr(r, "when", "") in ("setup", "call")]
    if ran or not skipped or not all(_is_case_report(r) for r in skipped):
        return False
    reporter.write_line(
        f"gdn-harness: nothing was tested: all {len(skipped)} selected cases were skipped "
        f"(exit {EXIT_NO_TESTS})",
        red=True,
    )
    return True


def _is_case_report(report: Any) -> bool:
    return "::" in report.nodeid and report.nodeid.split("::")[0].endswith((".yaml", ".yml"))


# --------------------------------------------------------------------------
# Items


@cache
def _implementation(name: str):
    from harness.impls.registry import load_implementation

    return load_implementation(name)


@cache
def _pin_worker_gpu(worker: str) -> None:
    """Each xdist worker owns one GPU (gw0 -> cuda:0, ...); one GPU serves all."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(worker[2:] or 0) % torch.cuda.device_count())


class CaseFile(pytest.File):
    def collect(self):
        from harness.cases import CaseFileError, load_file

        try:
            specs = load_file(self.path)
        except CaseFileError as exc:  # an error of its own, while the other files run
            yield InvalidCaseFile.from_parent(self, name=INVALID, message=str(exc))
            return
        wanted = options.wanted_tiers(self.config.getoption("tier"), set(TIERS))
        for spec in specs:
            if spec.tier in wanted:
                yield CaseItem.from_parent(self, name=spec.name, spec=spec)


class InvalidCaseFile(pytest.Item):
    """Stands for a case file that does not load: an error, not a stopped session."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def setup(self) -> None:  # an error in setup: the report says "error", not "failed"
        pytest.fail(self.message, pytrace=False)

    def runtest(self) -> None:  # never reached
        pytest.fail(self.message, pytrace=False)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: invalid case file"


class CaseItem(pytest.Item):
    def __init__(self, *, spec: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.add_marker(getattr(pytest.mark, f"tier_{spec.tier}"))

    def setup(self) -> None:
        worker = getattr(self.config, "workerinput", {}).get("workerid")
        if worker:
            _pin_worker_gpu(worker)

    def runtest(self) -> None:
        from harness.report import ResultLog, console_failure
        from harness.run.result import CaseFailed
        from harness.run.runner import run_case

        opt = self.config.getoption
        impl = _implementation(opt("impl")).with_options(opt("pad"), opt("pad_output"))
        baseline = None if opt("baseline") == "none" else _implementation(opt("baseline"))
        result = run_case(self.spec, impl, baseline, check_device=opt("check_device"))
        run_dir = getattr(self.config, "_gdn_report_dir", None)
        if run_dir:
            ResultLog(run_dir).append(result)
        if result.status == "skipped":
            pytest.skip(result.reason)
        if result.failed:
            raise CaseFailed(console_failure(result))

    def repr_failure(self, excinfo, style=None):
        from harness.impls.registry import ImplError
        from harness.run.result import CaseFailed

        if isinstance(excinfo.value, (CaseFailed, ImplError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.spec.line - 1, f"{self.spec.file}::{self.spec.name}"
