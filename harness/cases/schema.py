"""The case file JSON Schema and its errors, translated for people.

``schema.json`` (draft 2020-12) says what a case file may hold; editors
read it through ``cases/schema.json``, a link to the copy shipped in this
package. Validation errors become ``(path, message, line)`` triples that
name the offending field, with a did-you-mean for misspelt keys.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.cases.errors import SHOWN_CHARS, clip, shown
from harness.cases.yamlfile import LineMap, dotted, get, line_at

SCHEMA_PATH = Path(__file__).with_name("schema.json")  # cases/schema.json links here
SIZE_FIELDS = ("B", "H", "HV", "K", "V")
SCALAR_FIELDS = ("act_dtype", "state_dtype", "param_dtype", "index_dtype", "use_qk_l2norm")
TAIL_FIELDS = ("steps", "seed", "tier")
NAME_RE = r"[A-Za-z0-9_.-]+"  # a case name, as in the schema

Problem = tuple[tuple, str, int | None]  # (path of the field, message, YAML line)


@cache
def load_schema() -> dict:
    """The case file JSON Schema (draft 2020-12).

    It ships inside the package; ``cases/schema.json`` is a link to it, next
    to the files it describes, where editors find it.
    """
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator(ref: str | None) -> jsonschema.Draft202012Validator:
    schema = load_schema()
    if ref is not None:
        schema = {**schema, "$ref": f"#/$defs/{ref}"}
        for key in ("type", "properties", "required", "additionalProperties"):
            schema.pop(key, None)
    return jsonschema.Draft202012Validator(schema)


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    if len(str(word)) > SHOWN_CHARS:  # no field name is that long
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _schema_problem(error: jsonschema.ValidationError, tree: Any) -> tuple[tuple, str]:
    """Translate a schema error into (path of the offending field, message)."""
    path, inst, kind, val = (
        tuple(error.absolute_path),
        error.instance,
        error.validator,
        error.validator_value,
    )
    if "propertyNames" in error.relative_schema_path:  # the instance is the bad key
        if kind == "enum":
            return (
                *path,
                inst,
            ), f"unknown key{did_you_mean(inst, val)}; allowed: {', '.join(val)}"
        return (*path, inst), f"invalid key; keys must match {val}"
    if kind is None:  # a `false` schema; jsonschema leaves the key out of the path
        parent = get(tree, path)
        if isinstance(parent, dict):
            path = (*path, next(k for k in parent if k in ("name", "matrix")))
        return path, "cannot be set in defaults"
    if kind == "additionalProperties" and isinstance(inst, dict):
        known = error.schema.get("properties", {})
        extra = [k for k in inst if k not in known]
        key = min(extra, key=lambda k: inst.key_lines.get(k, 0) if isinstance(inst, LineMap) else 0)
        allowed = ", ".join(known)
        return (*path, key), f"unknown field{did_you_mean(key, known)}; allowed: {allowed}"
    if kind == "required":
        missing = next(k for k in val if k not in inst)
        return (*path, missing), "missing required field"
    if kind == "type":
        types = [val] if isinstance(val, str) else val
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return path, f"must be {want} (got {shown(inst)})"
    if kind == "enum":
        return path, f"must be one of {', '.join(map(str, val))} (got {shown(inst)})"
    messages = {
        "minimum": f"must be >= {val} (got {shown(inst)})",
        "maximum": f"must be <= {val} (got {shown(inst)})",
        "exclusiveMinimum": f"must be > {val} (got {shown(inst)})",
        "pattern": f"must match {val} (got {shown(inst)})",
        "minItems": f"must have at least {val} item(s)",
        "maxItems": f"must have at most {val} item(s)",
        "minProperties": f"must have at least {val} key(s)",
        "maxLength": f"must be at most {val} characters long",
    }
    return path, messages.get(kind, clip(error.message, SHOWN_CHARS))


def schema_errors(tree: Any, ref: str | None) -> list[Problem]:
    """Every schema error of ``tree`` (the whole document, or a ``$defs`` entry)."""
    found = []
    for error in _validator(ref).iter_errors(tree):
        path, message = _schema_problem(error, tree)
        found.append((path, message, error.validator))
    # an unknown field is likelier a misspelt required one than a second mistake
    unknown_in = {p[:-1] for p, _, kind in found if kind == "additionalProperties"}
    return [
        (p, m, line_at(tree, p))
        for p, m, kind in found
        if not (kind == "required" and p[:-1] in unknown_in)
    ]


def problem_order(problem: Problem) -> tuple:
    """Sort key: file order, deterministic on ties."""
    path, message, line = problem
    return (line or 0, len(path), dotted(path), message)


def first(errors: list[Problem]) -> Problem:
    """The error that comes first in the file."""
    return min(errors, key=problem_order)
