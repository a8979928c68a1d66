"""YAML case files: loading, validation, matrix expansion, selection, writing.

Users write cases in YAML (format in ``cases/schema.json`` and README); this
module turns them into validated ``CaseSpec`` objects and is the only place
that reads YAML. Every mistake in a case file becomes a ``CaseFileError``
that names the file, the case, the field and the YAML line, because a bad
case file found late (or silently accepted) costs far more than a precise
message at load time. Loading never allocates tensors: huge cases are
refused from a size estimate.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.core.dtypes import nbytes
from harness.core.spec import CaseSpec, ExpectError, LayoutSpec, SlotSpec, Tolerance, ValueSpec
from harness.core.tiers import TIERS

SCHEMA_PATH = Path(__file__).with_name("schema.json")  # cases/schema.json links here
GIB = 1 << 30
# Estimated input bytes (mixed_qkv + a/b + state pool + out) above which a
# case is refused at load time, per tier. Override with ``memory_limits=``.
DEFAULT_MEMORY_LIMITS: dict[str, int] = {"cpu": 2 * GIB, "gpu": 64 * GIB, "nightly": 64 * GIB}
INDEX_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
SIZE_FIELDS = ("B", "H", "HV", "K", "V")
SCALAR_FIELDS = ("act_dtype", "state_dtype", "param_dtype", "index_dtype", "use_qk_l2norm")
TAIL_FIELDS = ("steps", "seed", "tier")
NAME_RE = r"[A-Za-z0-9_.-]+"  # as in the schema
MAX_VARIANTS = 4096  # per case: a matrix product beyond this is surely a mistake

StrPath = str | os.PathLike


class CaseFileError(Exception):
    """A case file that cannot be used, located as precisely as possible."""

    def __init__(
        self,
        file: str,
        case: str | None,
        field: str | None,
        line: int | None,
        message: str,
    ) -> None:
        self.file = file
        self.case = case
        self.field = field
        self.line = line
        self.message = message
        super().__init__(file, case, field, line, message)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = []
        if self.case is not None:
            parts.append(f"case '{self.case}'")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        ctx = ", ".join(parts)
        return f"{where}: {ctx}: {self.message}" if ctx else f"{where}: {self.message}"


# --------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    """A YAML mapping that remembers its own line and the line of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.problems: list[tuple[Any, str, int]] = []  # bad keys: key, message, line


class _Seq(list):
    """A YAML sequence that remembers its own line and the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


_FLOAT_TAG = "tag:yaml.org,2002:float"
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


def _yaml12_floats(cls: type) -> None:
    """Read ``1e-4`` as a float: PyYAML's YAML 1.1 rules would make it a string."""
    cls.yaml_implicit_resolvers = {
        key: [r for r in resolvers if r[0] != _FLOAT_TAG]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    """Quotes strings that ``_Loader`` would read back as something else."""

    def represent_list(self, data: list) -> yaml.Node:
        flow = all(not isinstance(x, (dict, list)) for x in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_yaml12_floats(_Loader)
_yaml12_floats(_Dumper)
_Dumper.add_representer(list, _Dumper.represent_list)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _convert(node: yaml.Node, loader: _Loader, stack: frozenset[int]) -> Any:
    """Build plain data from a node tree, keeping the line of every key and item."""
    if id(node) in stack:
        raise yaml.YAMLError(f"line {_line(node)}: recursive alias")
    stack = stack | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        seq = _Seq(_line(node))
        for item in node.value:
            seq.append(_convert(item, loader, stack))
            seq.item_lines.append(_line(item))
        return seq
    if not isinstance(node, yaml.MappingNode):
        return loader.construct_object(node, deep=True)
    own = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    first_lines: dict[Any, int] = {}
    mapping = _Map(_line(node))
    for knode in own:
        key = _hashable_key(loader.construct_object(knode, deep=True), knode)
        if not isinstance(key, str):
            mapping.problems.append((str(key), f"keys must be strings (got {key!r})", _line(knode)))
        elif key in first_lines:
            msg = f"duplicate key (first on line {first_lines[key]})"
            mapping.problems.append((key, msg, _line(knode)))
        first_lines.setdefault(key, _line(knode))
    loader.flatten_mapping(node)
    for knode, vnode in node.value:
        key = _hashable_key(loader.construct_object(knode, deep=True), knode)
        mapping[key] = _convert(vnode, loader, stack)
        mapping.key_lines[key] = _line(knode)
    return mapping


def _hashable_key(key: Any, node: yaml.Node) -> Any:
    try:
        hash(key)
    except TypeError:
        raise yaml.YAMLError(f"line {_line(node)}: a mapping key must be a scalar") from None
    return key


def _parse(text: str, file: str) -> Any:
    """Parse one YAML document into ``_Map``/``_Seq`` trees with line numbers."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _convert(node, loader, frozenset())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ", ".join(str(x) for x in (exc.context, exc.problem) if x)
        line = mark.line + 1 if mark is not None else None
        raise CaseFileError(file, None, None, line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        text_ = str(exc)
        m = re.match(r"line (\d+): (.*)", text_)
        line, msg = (int(m[1]), m[2]) if m else (None, text_)
        raise CaseFileError(file, None, None, line, f"invalid YAML: {msg}") from None
    finally:
        loader.dispose()


def _clone(value: Any) -> Any:
    if isinstance(value, _Map):
        out = _Map(value.line)
        for key, item in value.items():
            out[key] = _clone(item)
        out.key_lines = dict(value.key_lines)
        return out
    if isinstance(value, _Seq):
        seq = _Seq(value.line)
        seq.extend(_clone(x) for x in value)
        seq.item_lines = list(value.item_lines)
        return seq
    return value


def _merge(base: _Map, over: _Map) -> _Map:
    """Deep merge ``over`` onto a copy of ``base``; maps merge, everything else replaces."""
    out = _clone(base)
    out.line = over.line
    for key, value in over.items():
        if isinstance(value, _Map) and isinstance(out.get(key), _Map):
            out[key] = _merge(out[key], value)
        else:
            out[key] = _clone(value)
        out.key_lines[key] = over.key_lines[key]
    return out


def _line_at(tree: Any, path: Sequence[Any]) -> int | None:
    """Line of the deepest existing element of ``path``."""
    line = getattr(tree, "line", None)
    node = tree
    for part in path:
        if isinstance(node, _Map) and part in node:
            line, node = node.key_lines[part], node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.item_lines[part], node[part]
        else:
            break
    return line


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk_lines(tree: Any, prefix: tuple = ()) -> Iterator[tuple[tuple, int]]:
    if isinstance(tree, _Map):
        for key, value in tree.items():
            yield (*prefix, key), tree.key_lines[key]
            yield from _walk_lines(value, (*prefix, key))
    elif isinstance(tree, _Seq):
        for i, value in enumerate(tree):
            yield (*prefix, i), tree.item_lines[i]
            yield from _walk_lines(value, (*prefix, i))


def _first_bad_key(tree: Any, prefix: tuple = ()) -> tuple[tuple, str, int] | None:
    """The first repeated (YAML silently keeps the last) or non-string key, in file order."""
    found = []
    if isinstance(tree, _Map):
        found += [((*prefix, k), msg, ln) for k, msg, ln in tree.problems]
        children = list(tree.items())
    elif isinstance(tree, _Seq):
        children = list(enumerate(tree))
    else:
        return None
    for key, value in children:
        hit = _first_bad_key(value, (*prefix, key))
        if hit:
            found.append(hit)
    return min(found, key=lambda h: h[2]) if found else None


# --------------------------------------------------------------------------
# Schema validation


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


def _did_you_mean(word: object, choices: Iterable[str]) -> str:
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
            ), f"unknown key{_did_you_mean(inst, val)}; allowed: {', '.join(val)}"
        return (*path, inst), f"invalid key; keys must match {val}"
    if kind is None:  # a `false` schema; jsonschema leaves the key out of the path
        parent = _get(tree, path)
        if isinstance(parent, dict):
            path = (*path, next(k for k in parent if k in ("name", "matrix")))
        return path, "cannot be set in defaults"
    if kind == "additionalProperties" and isinstance(inst, dict):
        known = error.schema.get("properties", {})
        extra = [k for k in inst if k not in known]
        key = min(extra, key=lambda k: inst.key_lines.get(k, 0) if isinstance(inst, _Map) else 0)
        allowed = ", ".join(known)
        return (*path, key), f"unknown field{_did_you_mean(key, known)}; allowed: {allowed}"
    if kind == "required":
        missing = next(k for k in val if k not in inst)
        return (*path, missing), "missing required field"
    if kind == "type":
        types = [val] if isinstance(val, str) else val
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return path, f"must be {want} (got {inst!r})"
    if kind == "enum":
        return path, f"must be one of {', '.join(map(str, val))} (got {inst!r})"
    messages = {
        "minimum": f"must be >= {val} (got {inst!r})",
        "maximum": f"must be <= {val} (got {inst!r})",
        "exclusiveMinimum": f"must be > {val} (got {inst!r})",
        "pattern": f"must match {val} (got {inst!r})",
        "minItems": f"must have at least {val} item(s)",
    }
    return path, messages.get(kind, error.message)


def _schema_errors(tree: Any, ref: str | None) -> list[tuple[tuple, str, int | None]]:
    found = []
    for error in _validator(ref).iter_errors(tree):
        path, message = _schema_problem(error, tree)
        found.append((path, message, error.validator))
    # an unknown field is likelier a misspelt required one than a second mistake
    unknown_in = {p[:-1] for p, _, kind in found if kind == "additionalProperties"}
    return [
        (p, m, _line_at(tree, p))
        for p, m, kind in found
        if not (kind == "required" and p[:-1] in unknown_in)
    ]


def _first(errors: list[tuple[tuple, str, int | None]]) -> tuple[tuple, str, int | None]:
    """The error that comes first in the file (deterministic on ties)."""
    return min(errors, key=lambda e: (e[2] or 0, len(e[0]), _dotted(e[0]), e[1]))


# --------------------------------------------------------------------------
# Cases and matrix variants


@dataclass
class _Variant:
    """One expanded case before it becomes a CaseSpec."""

    name: str | None  # None when the case has no (valid) name: the schema reports it
    line: int
    tree: _Map


def _doc_error(file: str, doc: Any, path: tuple, message: str, line: int | None = None):
    """A CaseFileError for a path in the raw document (``('cases', 2, 'B')``)."""
    line = line if line is not None else _line_at(doc, path)
    cases = doc.get("cases")
    if len(path) >= 2 and path[0] == "cases" and isinstance(cases, list):
        raw = cases[path[1]]
        case = raw.get("name") if isinstance(raw, dict) else None
        case = case if isinstance(case, str) else None
        field = _dotted(path[2:]) or _dotted(path)  # the item itself: 'cases[3]'
        return CaseFileError(file, case, field, line, message)
    return CaseFileError(file, None, _dotted(path) or None, line, message)


def _check_document(doc: Any, file: str) -> None:
    """Structure of the whole file: a mapping with ``cases``, no duplicate keys, schema."""
    if not isinstance(doc, _Map):
        what = "empty" if doc is None else "a list" if isinstance(doc, _Seq) else repr(doc)
        line = getattr(doc, "line", 1)
        raise CaseFileError(file, None, None, line, f"must be a mapping with 'cases' (got {what})")
    dup = _first_bad_key(doc)
    if dup:
        raise _doc_error(file, doc, dup[0], dup[1], dup[2])
    errors = _schema_errors(doc, None)
    if errors:
        path, message, line = _first(errors)
        raise _doc_error(file, doc, path, message, line)


def _value_label(value: Any) -> str | None:
    """Readable id part for a scalar matrix value (None for lists and maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return None
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value))
    return label or "empty"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that is unique among the keys."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(k == short or k.endswith("." + short) for k in keys) == 1:
                break
        out[key] = short
    return out


def _matrix_labels(matrix: _Map) -> dict[str, list[str]]:
    """Id parts for every matrix value; ``key=value`` where values collide across keys."""
    keys = list(matrix)
    short = _short_keys(keys)
    labels = {}
    for key in keys:
        raw = [_value_label(v) for v in matrix[key]]
        labels[key] = [f"{short[key]}{i}" if lab is None else lab for i, lab in enumerate(raw)]
    clashing = [
        key
        for key in keys
        if set(labels[key]) & {lab for k in keys if k != key for lab in labels[k]}
    ]
    for key in clashing:
        labels[key] = [f"{short[key]}={lab}" for lab in labels[key]]
    return labels


def _set_path(tree: _Map, parts: list[str], value: Any, line: int) -> str | None:
    """Apply one matrix value; returns an error message or None."""
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = _Map(line)
            node[part], node.key_lines[part] = child, line
        elif not isinstance(child, _Map):
            return f"'{'.'.join(parts[: i + 1])}' is not a mapping"
        node = child
    last = parts[-1]
    if isinstance(value, _Map) and isinstance(node.get(last), _Map):
        node[last] = _merge(node[last], value)
    else:
        node[last] = _clone(value)
    node.key_lines[last] = line
    return None


def _expand(file: str, doc: _Map, index: int, base: _Map) -> list[_Variant]:
    """The variants of case ``index``: the case itself, or its matrix product."""
    raw = doc["cases"][index]
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    matrix = raw.get("matrix")
    if matrix is None:
        return [_Variant(name, raw.line, base)]
    for key in matrix:
        if key.split(".")[0] in ("name", "matrix"):
            path = ("cases", index, "matrix", key)
            raise _doc_error(file, doc, path, f"the matrix cannot vary '{key}'")
    labels = _matrix_labels(matrix)
    _check_labels(file, doc, index, labels)
    ranges = [range(len(values)) for values in matrix.values()]
    if math.prod(map(len, ranges)) > MAX_VARIANTS:
        count = " x ".join(str(len(r)) for r in ranges)
        msg = f"expands to {count} variants, more than {MAX_VARIANTS}"
        raise _doc_error(file, doc, ("cases", index, "matrix"), msg)
    combos = [dict(zip(matrix, c, strict=True)) for c in itertools.product(*ranges)]
    ids = _variant_ids(combos, labels, keyed=False)
    if len(set(ids)) < len(ids):  # e.g. '-' inside values: fall back to key=value
        ids = _variant_ids(combos, labels, keyed=True)
    variants = []
    for combo, vid in zip(combos, ids, strict=True):
        tree = _clone(base)
        for key, i in combo.items():
            msg = _set_path(tree, key.split("."), matrix[key][i], matrix[key].item_lines[i])
            if msg:
                raise _doc_error(file, doc, ("cases", index, "matrix", key), msg)
        variants.append(_Variant(None if name is None else f"{name}[{vid}]", raw.line, tree))
    return variants


def _variant_ids(combos: list[dict[str, int]], labels: dict[str, list[str]], keyed: bool):
    short = _short_keys(list(labels))
    return [
        "-".join(
            f"{short[k]}={labels[k][i]}" if keyed and "=" not in labels[k][i] else labels[k][i]
            for k, i in combo.items()
        )
        for combo in combos
    ]


def _check_labels(file: str, doc: _Map, index: int, labels: dict[str, list[str]]) -> None:
    matrix = doc["cases"][index]["matrix"]
    for key, labs in labels.items():
        for i, lab in enumerate(labs):
            if lab in labs[:i]:
                path = ("cases", index, "matrix", key, i)
                msg = f"repeats the value {matrix[key][i]!r} (variant ids must be unique)"
                raise _doc_error(file, doc, path, msg)


# --------------------------------------------------------------------------
# Building and checking CaseSpecs


def _floats(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in d.items()
    }


def _tolerance(d: Mapping[str, Any] | None) -> Tolerance:
    return Tolerance(**_floats(d or {}))


def _build(file: str, v: _Variant) -> CaseSpec:
    """A CaseSpec from a schema-valid variant tree (types normalised for equality)."""
    t = v.tree
    slots = dict(t.get("slots", {}))
    if slots.get("indices") is not None:
        slots["indices"] = tuple(int(i) for i in slots["indices"])
    if "pad_seed" in slots:
        slots["pad_seed"] = int(slots["pad_seed"])
    if "pad_fraction" in slots:
        slots["pad_fraction"] = float(slots["pad_fraction"])
    layout = {
        k: (val if isinstance(val, (bool, str)) else int(val))
        for k, val in t.get("layout", {}).items()
    }
    tol = t.get("tolerance", {})
    expect = t.get("expect")
    sizes = {k: int(t[k]) for k in SIZE_FIELDS}
    return CaseSpec(
        file=file,
        name=v.name,
        line=v.line,
        **sizes,
        pool=int(t.get("pool", sizes["B"])),
        **{k: t[k] for k in SCALAR_FIELDS if k in t},
        layout=LayoutSpec(**layout),
        slots=SlotSpec(**slots),
        values=ValueSpec(**_floats(t.get("values", {}))),
        scale=None if t.get("scale") is None else float(t["scale"]),
        steps=int(t.get("steps", 1)),
        seed=int(t.get("seed", 0)),
        tier=t.get("tier", "cpu"),
        tol_out=_tolerance(tol.get("out")),
        tol_state=_tolerance(tol.get("state")),
        expect=None if expect is None else ExpectError(**_expect_args(expect)),
        overrides=tuple(sorted(_overrides(t.get("overrides", {})))),
        field_lines=tuple(sorted((_dotted(p), ln) for p, ln in _walk_lines(t))),
    )


def _overrides(d: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """Override items, lists made tuples so that the frozen CaseSpec stays hashable."""
    for key, value in d.items():
        yield key, tuple(value) if isinstance(value, list) else value


def _expect_args(expect: Mapping[str, Any]) -> dict[str, str]:
    args = {"match": expect["error"]}
    if "exception" in expect:
        args["exception"] = expect["exception"]
    return args


def max_live_rows(B: int, slots: SlotSpec) -> int:
    """Upper bound on rows that name a slot; the pool must have at least this many."""
    if slots.indices is not None:
        return sum(i >= 0 for i in slots.indices)
    if slots.padding == "random":
        return 0 if slots.pad_fraction >= 1 else B
    bound = {"none": B, "all": 0, "alternate": (B + 1) // 2, "first": B - 1, "last": B - 1}
    return bound[slots.padding]


def estimate_case_bytes(spec: CaseSpec) -> int:
    """Bytes of the input buffers one case allocates (mixed_qkv, a/b, state pool, out)."""
    act = nbytes(spec.act_dtype)
    lay = spec.layout
    qkv = spec.B * (lay.qkv_col_offset + spec.qkv_width + lay.qkv_row_pad) * act
    ab_buffers = 1 if lay.ab_packed else 2
    ab = ab_buffers * spec.B * (2 * spec.HV // ab_buffers + lay.ab_row_pad) * act
    slot = spec.HV * spec.K * spec.V + lay.state_slot_pad
    state = spec.pool * slot * nbytes(spec.state_dtype)
    out = spec.B * spec.HV * spec.V * act
    return qkv + ab + state + out


def _semantic_problem(spec: CaseSpec, limits: Mapping[str, int]) -> tuple[str | None, str] | None:
    """Rules the schema cannot express: (field, message) of the first one broken."""
    if spec.HV % spec.H:
        return "HV", f"must be a multiple of H={spec.H} (got {spec.HV})"
    if spec.values.a_log_hi < spec.values.a_log_lo:
        return "values.a_log_hi", f"must be >= a_log_lo={spec.values.a_log_lo}"
    problem = _indices_problem(spec)
    if problem:
        return problem
    _, index_max = INDEX_RANGE[spec.index_dtype]
    if spec.pool - 1 > index_max:
        return "index_dtype", f"cannot index a pool of {spec.pool} slots"
    live = max_live_rows(spec.B, spec.slots)
    if spec.slots.indices is None and spec.pool < live:
        what = f"padding '{spec.slots.padding}'"
        return "pool", f"{spec.pool} slots cannot hold up to {live} live rows ({what}, B={spec.B})"
    if spec.expect is not None:
        try:
            re.compile(spec.expect.match)
        except re.error as exc:
            return "expect.error", f"is not a valid regular expression: {exc}"
    return _memory_problem(spec, limits)


def _indices_problem(spec: CaseSpec) -> tuple[str, str] | None:
    indices = spec.slots.indices
    if indices is None:
        return None
    if len(indices) != spec.B:
        return "slots.indices", f"must have B={spec.B} entries (got {len(indices)})"
    lo, _ = INDEX_RANGE[spec.index_dtype]
    seen: dict[int, int] = {}
    for row, slot in enumerate(indices):
        where = f"slots.indices[{row}]"
        if slot >= spec.pool:
            return where, f"slot {slot} is out of range for pool={spec.pool} (set 'pool')"
        if slot < lo:
            return where, f"slot {slot} does not fit {spec.index_dtype}"
        if slot >= 0 and slot in seen:
            return where, f"slot {slot} is already used by row {seen[slot]}"
        seen.setdefault(slot, row)
    return None


def _memory_problem(spec: CaseSpec, limits: Mapping[str, int]) -> tuple[None, str] | None:
    need, limit = estimate_case_bytes(spec), limits.get(spec.tier)
    if limit is None or need <= limit:
        return None
    return None, (
        f"inputs need about {need / GIB:.2f} GiB, over the {limit / GIB:.2f} GiB limit "
        f"of tier '{spec.tier}' (shrink the sizes or move the case to a bigger tier)"
    )


def _nonfinite(tree: Any, prefix: tuple = ()) -> tuple | None:
    if isinstance(tree, float) and not math.isfinite(tree):
        return prefix
    if isinstance(tree, dict):
        items: Iterable[tuple[Any, Any]] = tree.items()
    else:
        items = enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        hit = _nonfinite(value, (*prefix, key))
        if hit is not None:
            return hit
    return None


def _variant_spec(file: str, v: _Variant, limits: Mapping[str, int]) -> CaseSpec:
    """Validate one variant against the case schema and the semantic rules."""
    case = v.name
    errors = _schema_errors(v.tree, "case")
    if errors:
        path, message, line = _first(errors)
        raise CaseFileError(file, case, _dotted(path) or None, line, message)
    bad = _nonfinite(v.tree)
    if bad is not None:
        value = _get(v.tree, bad)
        raise CaseFileError(
            file, case, _dotted(bad), _line_at(v.tree, bad), f"must be finite (got {value})"
        )
    spec = _build(file, v)
    problem = _semantic_problem(spec, limits)
    if problem:
        field, message = problem
        line = spec.line if field is None else spec.line_of(field)
        raise CaseFileError(file, case, field, line, message)
    return spec


def _get(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


# --------------------------------------------------------------------------
# Public API


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


def load_file(path: StrPath, *, memory_limits: Mapping[str, int] | None = None) -> list[CaseSpec]:
    """All cases of one YAML file, expanded and validated; CaseFileError on any problem."""
    file = display_path(path)
    limits = {**DEFAULT_MEMORY_LIMITS, **(memory_limits or {})}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(file, None, None, None, f"cannot read: {exc}") from None
    doc = _parse(text, file)
    _check_document(doc, file)
    defaults = doc.get("defaults", _Map(doc.line))
    specs: list[CaseSpec] = []
    first_line: dict[str, int] = {}
    for index, raw in enumerate(doc["cases"]):
        name = raw.get("name")
        if isinstance(name, str) and name in first_line:
            msg = f"duplicate case name (first on line {first_line[name]})"
            raise _doc_error(file, doc, ("cases", index, "name"), msg)
        if isinstance(name, str):
            first_line[name] = raw.key_lines["name"]
        body = _clone(raw)
        body.pop("matrix", None)
        base = _merge(defaults, body)
        for variant in _expand(file, doc, index, base):
            specs.append(_variant_spec(file, variant, limits))
    return specs


def iter_case_files(paths: Iterable[StrPath]) -> Iterator[Path]:
    """Case files under ``paths``: files as given, folders searched for *.yaml / *.yml.

    Folder contents come in sorted order (hidden entries skipped) so runs and
    reports are deterministic; a file reached twice is yielded once.
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
            raise CaseFileError(display_path(p), None, None, None, "no such file or directory")
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                yield f


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def load_paths(
    paths: Sequence[StrPath], *, memory_limits: Mapping[str, int] | None = None
) -> list[CaseSpec]:
    """Cases of every file under ``paths``, in deterministic order."""
    out: list[CaseSpec] = []
    for file in iter_case_files(paths):
        out.extend(load_file(file, memory_limits=memory_limits))
    return out


def compile_keyword(expr: str) -> Callable[[str], bool]:
    """A matcher for a pytest ``-k``-like expression over case ids.

    Words match case-insensitively as substrings; ``and``, ``or``, ``not``
    and parentheses combine them. Parsed by hand: user text is never eval'd.
    """
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"invalid -k expression {expr!r}: unexpected end")
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Callable[[str], bool]:
        terms = [parse_and()]
        while peek() == "or":
            take()
            terms.append(parse_and())
        return terms[0] if len(terms) == 1 else (lambda s: any(t(s) for t in terms))

    def parse_and() -> Callable[[str], bool]:
        terms = [parse_not()]
        while peek() == "and":
            take()
            terms.append(parse_not())
        return terms[0] if len(terms) == 1 else (lambda s: all(t(s) for t in terms))

    def parse_not() -> Callable[[str], bool]:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda s: not inner(s)
        token = take()
        if token == "(":
            inner = parse_or()
            if take() != ")":
                raise ValueError(f"invalid -k expression {expr!r}: expected ')'")
            return inner
        if token in (")", "and", "or"):
            raise ValueError(f"invalid -k expression {expr!r}: unexpected {token!r}")
        word = token.lower()
        return lambda s: word in s.lower()

    if not tokens:
        return lambda s: True
    matcher = parse_or()
    if pos != len(tokens):
        raise ValueError(f"invalid -k expression {expr!r}: unexpected {tokens[pos]!r}")
    return matcher


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


def _changed(obj: Any, default: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if v != getattr(default, k)}


def case_to_yaml(spec: CaseSpec, comment: str = "") -> str:
    """YAML text of a one-case file that loads back to ``spec``.

    Every field is written out (not just non-defaults) so that a regression
    file keeps meaning the same case if a default changes later. A matrix
    variant's brackets are not valid in a name and become '_'.
    """
    name = spec.name
    if not re.fullmatch(NAME_RE, name):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).rstrip("_") or "case"
    case: dict[str, Any] = {"name": name}
    case.update({k: getattr(spec, k) for k in (*SIZE_FIELDS, "pool", *SCALAR_FIELDS)})
    case["layout"] = dict(vars(spec.layout))
    slots = dict(vars(spec.slots))
    if slots["indices"] is None:
        del slots["indices"]
    else:
        slots["indices"] = list(slots["indices"])
    case["slots"] = slots
    case["values"] = dict(vars(spec.values))
    if spec.scale is not None:
        case["scale"] = spec.scale
    case.update({k: getattr(spec, k) for k in TAIL_FIELDS})
    tol = {
        k: _changed(t, Tolerance()) for k, t in (("out", spec.tol_out), ("state", spec.tol_state))
    }
    tol = {k: v for k, v in tol.items() if v}
    if tol:
        case["tolerance"] = tol
    if spec.expect is not None:
        case["expect"] = {"error": spec.expect.match}
        if spec.expect.exception != "ValueError":
            case["expect"]["exception"] = spec.expect.exception
    if spec.overrides:
        case["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.overrides}
    body = yaml.dump({"cases": [case]}, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
    header = "".join(f"# {ln}".rstrip() + "\n" for ln in comment.splitlines())
    return header + body


def same_case(a: CaseSpec, b: CaseSpec) -> bool:
    """Equal as cases: ignores where they were written (file, line, field_lines)."""
    blank = {"file": "", "line": 0, "field_lines": ()}
    return replace(a, **blank) == replace(b, **blank)
