"""YAML with line numbers: the only place that parses a case file's text.

``parse`` turns one YAML document into plain ``dict``/``list`` trees whose
mappings and sequences remember the line of every key and item
(:class:`LineMap`, :class:`LineSeq`), so that every later error can name the
line it is about. It reads YAML 1.2 floats (``1e-4`` is a number), keeps
merge keys (``<<: *anchor``) and records repeated and non-string keys, which
YAML itself would silently accept, as problems for the document check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import yaml

from harness.cases.errors import CaseFileError


class LineMap(dict):
    """A YAML mapping that remembers its own line and the line of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.problems: list[tuple[Any, str, int]] = []  # bad keys: key, message, line


class LineSeq(list):
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


def yaml12_floats(cls: type) -> None:
    """Read ``1e-4`` as a float: PyYAML's YAML 1.1 rules would make it a string."""
    cls.yaml_implicit_resolvers = {
        key: [r for r in resolvers if r[0] != _FLOAT_TAG]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


class _Loader(yaml.SafeLoader):
    pass


yaml12_floats(_Loader)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _convert(node: yaml.Node, loader: _Loader, stack: frozenset[int]) -> Any:
    """Build plain data from a node tree, keeping the line of every key and item."""
    if id(node) in stack:
        raise yaml.YAMLError(f"line {_line(node)}: recursive alias")
    stack = stack | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        seq = LineSeq(_line(node))
        for item in node.value:
            seq.append(_convert(item, loader, stack))
            seq.item_lines.append(_line(item))
        return seq
    if not isinstance(node, yaml.MappingNode):
        return loader.construct_object(node, deep=True)
    own = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    first_lines: dict[Any, int] = {}
    mapping = LineMap(_line(node))
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


def parse(text: str, file: str) -> Any:
    """Parse one YAML document into ``LineMap``/``LineSeq`` trees with line numbers."""
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


def clone(value: Any) -> Any:
    """A deep copy that keeps the lines."""
    if isinstance(value, LineMap):
        out = LineMap(value.line)
        for key, item in value.items():
            out[key] = clone(item)
        out.key_lines = dict(value.key_lines)
        return out
    if isinstance(value, LineSeq):
        seq = LineSeq(value.line)
        seq.extend(clone(x) for x in value)
        seq.item_lines = list(value.item_lines)
        return seq
    return value


def merge(base: LineMap, over: LineMap) -> LineMap:
    """Deep merge ``over`` onto a copy of ``base``; maps merge, everything else replaces."""
    out = clone(base)
    out.line = over.line
    for key, value in over.items():
        if isinstance(value, LineMap) and isinstance(out.get(key), LineMap):
            out[key] = merge(out[key], value)
        else:
            out[key] = clone(value)
        out.key_lines[key] = over.key_lines[key]
    return out


def line_at(tree: Any, path: Sequence[Any]) -> int | None:
    """Line of the deepest existing element of ``path``."""
    line = getattr(tree, "line", None)
    node = tree
    for part in path:
        if isinstance(node, LineMap) and part in node:
            line, node = node.key_lines[part], node[part]
        elif isinstance(node, LineSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.item_lines[part], node[part]
        else:
            break
    return line


def dotted(path: Iterable[Any]) -> str:
    """``('layout', 'pad')`` -> ``layout.pad``; list items as ``[i]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def walk_lines(tree: Any, prefix: tuple = ()) -> Iterator[tuple[tuple, int]]:
    """``(path, line)`` of every key and item, depth first."""
    if isinstance(tree, LineMap):
        for key, value in tree.items():
            yield (*prefix, key), tree.key_lines[key]
            yield from walk_lines(value, (*prefix, key))
    elif isinstance(tree, LineSeq):
        for i, value in enumerate(tree):
            yield (*prefix, i), tree.item_lines[i]
            yield from walk_lines(value, (*prefix, i))


def first_bad_key(tree: Any, prefix: tuple = ()) -> tuple[tuple, str, int] | None:
    """The first repeated (YAML silently keeps the last) or non-string key, in file order."""
    found = []
    if isinstance(tree, LineMap):
        found += [((*prefix, k), msg, ln) for k, msg, ln in tree.problems]
        children = list(tree.items())
    elif isinstance(tree, LineSeq):
        children = list(enumerate(tree))
    else:
        return None
    for key, value in children:
        hit = first_bad_key(value, (*prefix, key))
        if hit:
            found.append(hit)
    return min(found, key=lambda h: h[2]) if found else None


def get(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree
