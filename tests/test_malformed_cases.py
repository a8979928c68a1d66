"""The loader answers every broken case file with a precise CaseFileError.

Hypothesis draws broken files (``tests/malformed.py``):
wrong types, missing and unknown fields, impossible sizes, HV not a multiple
of H, overlapping or out-of-pool strides and slots, YAML syntax errors,
duplicates, broken document structure and sizes no machine can hold. For
each, ``harness.cases.load_file`` must raise ``CaseFileError`` (never
anything else, never accept the file) naming the file, the case, the field
and the line, and must refuse huge cases from an estimate, without
allocating anything.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from malformed import (
    ANY,
    HUGE_CHANGES,
    MalformedFile,
    huge_case_files,
    malformed_case_files,
    render,
)

from harness import cli
from harness.cases import CaseFileError, display_path, load_file
from harness.fuzz import profiles

CI = profiles.get_settings(profiles.CI)
HUGE_SECONDS = 0.5  # refusing a huge case is a size estimate: milliseconds, not a build
HUGE_TRACED_BYTES = 8 << 20  # Python-visible allocations while loading one (numpy included)


def _load_error(mf: MalformedFile, directory: str) -> tuple[Path, CaseFileError]:
    """Load the file; it must raise CaseFileError and nothing else."""
    path = mf.write(directory)
    try:
        specs = load_file(path)
    except CaseFileError as err:
        return path, err
    except Exception as exc:  # a traceback for the user: a bug in harness.cases
        raise AssertionError(
            f"{mf.kind} ({mf.description}): raised {type(exc).__name__}: {exc}\n{mf.text}"
        ) from exc
    raise AssertionError(f"{mf.kind} ({mf.description}) was accepted: {specs}\n{mf.text}")


def _matches(expected: object, got: object) -> bool:
    return expected is ANY or expected == got


def _check_error(mf: MalformedFile, path: Path, err: CaseFileError) -> None:
    where = f"{mf.kind} ({mf.description}): {err}\n{mf.text}"
    assert err.file == display_path(path), where
    assert str(err).startswith(err.file), where
    assert _matches(mf.case, err.case), where
    assert _matches(mf.field, err.field), where
    if mf.line is ANY:
        assert err.line is not None and err.line >= mf.min_line, where
    else:
        assert err.line == mf.line, where
    if err.line is not None:
        assert f"{err.file}:{err.line}: " in str(err), where
    if err.case is not None:
        assert f"case '{err.case}'" in str(err), where
    if err.field is not None:
        assert f"field '{err.field}'" in str(err), where
    assert err.message and "Traceback" not in str(err), where


@settings(CI, max_examples=250)
@given(mf=malformed_case_files())
def test_loader_names_file_case_field_and_line(mf: MalformedFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, err = _load_error(mf, tmp)
        _check_error(mf, path, err)


def _load_huge(mf: MalformedFile, directory: str) -> tuple[Path, CaseFileError, float, int]:
    """Load under tracemalloc with input building forbidden: time and peak bytes."""
    forbid = mock.patch(
        "harness.inputs.build.build_inputs", side_effect=AssertionError("allocated")
    )
    tracemalloc.start()
    try:
        with forbid:
            start = time.perf_counter()
            path, err = _load_error(mf, directory)
            elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return path, err, elapsed, peak


@settings(CI, max_examples=30)
@given(mf=huge_case_files())
def test_huge_cases_are_refused_without_allocating(mf: MalformedFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, err, elapsed, peak = _load_huge(mf, tmp)
    _check_error(mf, path, err)
    assert elapsed < HUGE_SECONDS and peak < HUGE_TRACED_BYTES, (elapsed, peak, str(err))


def _huge_file(changes: tuple[tuple[str, object], ...], field: str | None) -> MalformedFile:
    """A one-case file with ``changes``; the error's line is the case's, or the field's."""
    case: dict = {"name": "huge", "B": 2, "H": 1, "HV": 2, "K": 8, "V": 8, "layout": {}}
    for dotted, value in changes:
        *parents, last = dotted.split(".")
        node = case
        for part in parents:
            node = node[part]
        node[last] = value
    lines, where = render({"cases": [case]})
    line = 2 if field is None else where[("cases", 0, field)]
    return MalformedFile("huge", ("\n".join(lines) + "\n").encode(), "huge", ANY, line, huge=True)


@pytest.mark.parametrize("changes, field", HUGE_CHANGES, ids=lambda v: str(v)[:40])
def test_every_huge_size_is_refused_from_the_estimate(changes, field, tmp_path) -> None:
    mf = _huge_file(changes, field)
    _, err, elapsed, peak = _load_huge(mf, str(tmp_path))
    assert err.field == field and err.line == mf.line, str(err)
    assert elapsed < HUGE_SECONDS and peak < HUGE_TRACED_BYTES, (elapsed, peak, str(err))
    if field is None:
        assert "GiB" in err.message and "limit" in err.message


@settings(CI, max_examples=60)
@given(mf=malformed_case_files())
def test_validate_command_reports_without_traceback(mf: MalformedFile) -> None:
    """``gdn-harness validate FILE``: exit 2 and one 'error: FILE:LINE: ...' line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mf.write(tmp)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["validate", str(path)])
    text = err.getvalue()
    assert rc == 2, (mf.kind, mf.description, text)
    assert text.startswith(f"error: {display_path(path)}") and "Traceback" not in text, text


def test_validate_in_a_subprocess_prints_no_traceback(tmp_path) -> None:
    """The real console entry point, on a YAML syntax error."""
    path = tmp_path / "broken.yaml"
    path.write_text("cases:\n  - name: a\n    B: [1, 2\n    H: 1\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: {path}:") and "Traceback" not in proc.stderr
