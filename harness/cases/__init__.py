"""Stage 1: YAML case files to validated ``CaseSpec`` objects.

The only stage that reads YAML; every mistake in a file becomes a
``CaseFileError`` naming the file, the case, the field and the line
(``load_file`` raises the first, ``collect_file``/``collect_paths`` return
them all). A module per concern: ``yamlfile`` (parsing with lines, within
bounds), ``schema``, ``matrix``, ``semantics`` and ``magnitudes`` (the
rules the schema cannot express), ``load`` (the steps together),
``discover`` (files, the project's folder, selection), ``expression``
(``-k``), ``writer`` (back to YAML), ``errors``, ``limits`` (every bound
a file meets).
"""

from harness.cases.discover import (
    display_path,
    iter_case_files,
    project_root,
    regressions_dir,
    select,
)
from harness.cases.errors import CaseFileError
from harness.cases.expression import compile_keyword
from harness.cases.limits import DEFAULT_MEMORY_LIMITS, DEFAULT_WORK_LIMITS, GIB
from harness.cases.load import Collected, collect_file, collect_paths, load_file, load_paths
from harness.cases.schema import NAME_RE, SCHEMA_PATH, load_schema
from harness.cases.semantics import case_work, estimate_case_bytes, max_live_rows
from harness.cases.writer import case_to_yaml, same_case

__all__ = [
    "DEFAULT_MEMORY_LIMITS",
    "DEFAULT_WORK_LIMITS",
    "GIB",
    "NAME_RE",
    "SCHEMA_PATH",
    "CaseFileError",
    "Collected",
    "case_to_yaml",
    "case_work",
    "collect_file",
    "collect_paths",
    "compile_keyword",
    "display_path",
    "estimate_case_bytes",
    "iter_case_files",
    "load_file",
    "load_paths",
    "load_schema",
    "max_live_rows",
    "project_root",
    "regressions_dir",
    "same_case",
    "select",
]
