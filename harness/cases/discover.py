"""Finding case files under paths, the project's case folder, and selecting
cases by tier and ``-k``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.cases.errors import CaseFileError, StrPath
from harness.cases.expression import compile_keyword
from harness.core.spec import CaseSpec
from harness.core.tiers import TIERS


def display_path(path: StrPath) -> str:
    """The path as given, relative to the working directory when inside it, with '/'."""
    p = Path(path)
    if p.is_absolute():
        for cwd, target in ((Path.cwd(), p), (Path.cwd().resolve(), p.resolve())):
            try:
                return Path(os.path.normpath(target.relative_to(cwd))).as_posix()
            except ValueError:
                continue
    return Path(os.path.normpath(p)).as_posix()


PROJECT_NAME = "gdn-harness"


def project_root(start: StrPath | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current directory)
    that holds gdn-harness's ``pyproject.toml`` or a ``.git``: where the
    project's ``cases/`` folder is. None when there is none."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _names_the_harness(folder / "pyproject.toml") or (folder / ".git").exists():
            return folder
    return None


# ``name = "gdn-harness"`` in the [project] table (tomllib is Python 3.11+)
_PROJECT_NAME = re.compile(
    r"^\[project\]\s*$(?:(?!^\[).)*?^name\s*=\s*[\"']" + re.escape(PROJECT_NAME) + r"[\"']",
    re.MULTILINE | re.DOTALL,
)


def _names_the_harness(pyproject: Path) -> bool:
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _PROJECT_NAME.search(text) is not None


def regressions_dir(start: StrPath | None = None) -> Path:
    """``cases/regressions`` of the project found from ``start`` up (of the
    current directory when there is no project), where fuzz findings go."""
    root = project_root(start)
    return (root if root is not None else Path.cwd()) / "cases" / "regressions"


def iter_case_files(
    paths: Iterable[StrPath], *, missing: list[CaseFileError] | None = None
) -> Iterator[Path]:
    """Case files under ``paths``: files as given, folders searched for *.yaml / *.yml.

    Folder contents come in sorted order (hidden entries skipped) so runs and
    reports are deterministic; a file reached twice is yielded once. A path
    that does not exist raises CaseFileError, or is added to ``missing``.
    """
    seen: set[Path] = set()
    for entry in paths:
        p = Path(entry)
        if p.is_dir():
            found = [f for pat in ("*.yaml", "*.yml") for f in p.rglob(pat)]
            files = sorted(
                (f for f in found if f.is_file() and not _hidden(f.relative_to(p))),
                key=lambda f: f.as_posix(),
            )
        elif p.exists():
            files = [p]
        else:
            error = CaseFileError(display_path(p), None, None, None, "no such file or directory")
            if missing is None:
                raise error
            missing.append(error)
            continue
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                yield f


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def select(
    cases: Iterable[CaseSpec],
    *,
    tiers: set[str] | None = None,
    keyword: str | None = None,
) -> list[CaseSpec]:
    """The cases in ``tiers`` (None: all) whose id matches ``keyword`` (None: all)."""
    if tiers is not None and set(tiers) - set(TIERS):
        raise ValueError(f"unknown tier(s) {sorted(set(tiers) - set(TIERS))}; known: {TIERS}")
    match = compile_keyword(keyword or "")
    return [c for c in cases if (tiers is None or c.tier in tiers) and match(c.id)]
