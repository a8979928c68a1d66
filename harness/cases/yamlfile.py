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

from harness.cases.errors import CaseFileError, shown
from harness.cases.limits import MAX_NESTING, MAX_VALUES


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


_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
# Errors of a construct that opens on one line and is never closed: the line
# it opens on is the one to show, not the one (often the end) where YAML gave up.
_UNCLOSED = ("while scanning a quoted scalar", "while parsing a flow")


class _Refused(Exception):
    """A document refused while it is built: past a bound of ``limits``, or a
    value YAML cannot construct; ``path`` is where it was found."""

    def __init__(self, line: int, message: str, path: tuple = ()) -> None:
        super().__init__(line, message, path)
        self.line, self.message, self.path = line, message, path


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with the nesting of the node tree bounded."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # the scanner's cost grows with the flow depth: stop before the composer would
        if self.flow_level >= MAX_NESTING:
            raise _Refused(self.get_mark().line + 1, _too_deep())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise _Refused(_line(self.peek_event()), _too_deep())
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


yaml12_floats(_Loader)


def _line(node: yaml.Node | yaml.Event) -> int:
    return node.start_mark.line + 1


def _too_deep() -> str:
    return f"lists and maps nested deeper than {MAX_NESTING} levels"


class _Converter:
    """Node graph to ``LineMap``/``LineSeq`` trees, within the value budget.

    Aliases share nodes, so the graph can stand for a tree far bigger than
    the text; every value built counts against ``MAX_VALUES`` and merge keys
    are expanded here, under the same count, rather than by PyYAML.
    """

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.left = MAX_VALUES
        self.seen: set[int] = set()  # nodes built once: meeting one again is an alias
        self.open: set[int] = set()  # nodes being built (the ancestors of the current one)

    def convert(self, node: yaml.Node, path: tuple, line: int) -> Any:
        """The value of ``node``, met at ``path`` on ``line``."""
        if isinstance(node, yaml.ScalarNode):
            self._count(path, line)
            return self._scalar(node, path)
        if node.tag not in _PLAIN_TAGS:  # PyYAML would drop it, or build a set or pairs
            kind = "list" if isinstance(node, yaml.SequenceNode) else "map"
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(_line(node), f"tag {tag} on a {kind} is not allowed", path)
        if id(node) in self.open:
            raise yaml.YAMLError(f"line {_line(node)}: recursive alias")
        self._count(path, line)
        self.seen.add(id(node))
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path, line)
            return self._mapping(node, path)
        finally:
            self.open.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, path: tuple) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. !!int 0x, 5000 digits
            what = f"cannot read {shown(node.value)} as {node.tag.rsplit(':', 1)[-1]}"
            raise _Refused(_line(node), f"{what}: {exc}", path) from None

    def _count(self, path: tuple, line: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Refused(line, _too_many(), path)
        if len(self.open) >= MAX_NESTING:
            raise _Refused(line, _too_deep(), path)

    def _sequence(self, node: yaml.SequenceNode, path: tuple, line: int) -> LineSeq:
        seq = LineSeq(_line(node))
        for i, item in enumerate(node.value):
            # an alias item carries its anchor's line: blame the list's own line
            at = line if id(item) in self.seen else _line(item)
            seq.append(self._within(item, (*path, i), at))
            seq.item_lines.append(_line(item))
        return seq

    def _within(self, node: yaml.Node, path: tuple, line: int) -> Any:
        """``convert``, blaming the outermost alias on the path for a blown budget."""
        alias = id(node) in self.seen
        try:
            return self.convert(node, path, line)
        except _Refused as exc:
            if alias:  # outer aliases overwrite this as the error travels up
                exc.path, exc.line = path, line
            raise

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> LineMap:
        """A mapping: merged keys first (as YAML's merge key puts them), then its own."""
        mapping = LineMap(_line(node))
        first_lines: dict[Any, int] = {}
        own = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        for knode, _ in own:
            key = self._key(knode)
            if not isinstance(key, str):
                msg = f"keys must be strings (got {shown(key)})"
                mapping.problems.append((str(key), msg, _line(knode)))
            elif key in first_lines:
                msg = f"duplicate key (first on line {first_lines[key]})"
                mapping.problems.append((key, msg, _line(knode)))
            first_lines.setdefault(key, _line(knode))
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                for source in self._merge_sources(node, vnode):
                    merged = self._within(source, (*path, "<<"), _line(knode))
                    self.left -= len(merged)  # copying costs as much as building
                    self._count((*path, "<<"), _line(knode))
                    for key, value in merged.items():
                        mapping[key], mapping.key_lines[key] = value, merged.key_lines[key]
        for knode, vnode in own:
            key = self._key(knode)
            mapping[key] = self._within(vnode, (*path, key), _line(knode))
            mapping.key_lines[key] = _line(knode)
        return mapping

    @staticmethod
    def _merge_sources(node: yaml.Node, value: yaml.Node) -> list[yaml.MappingNode]:
        """The mappings a merge key names; of a list, the first one wins (so it goes last)."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"expected a mapping for merging, but found {source.id}",
                    source.start_mark,
                )
        return list(reversed(sources)) if isinstance(value, yaml.SequenceNode) else sources

    def _key(self, knode: yaml.Node) -> Any:
        if knode.tag == "tag:yaml.org,2002:value":
            knode.tag = "tag:yaml.org,2002:str"
        key = self.loader.construct_object(knode, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.YAMLError(f"line {_line(knode)}: a mapping key must be a scalar") from None
        return key


def _too_many() -> str:
    return (
        f"the file holds more than {MAX_VALUES} values once its aliases are expanded "
        "(an alias bomb?)"
    )


def _case_name(root: yaml.Node | None, path: tuple) -> str | None:
    """The name of case ``path[1]`` read from the node graph (the tree was never built)."""
    if len(path) < 2 or path[0] != "cases" or not isinstance(root, yaml.MappingNode):
        return None
    cases = next((v for k, v in root.value if getattr(k, "value", None) == "cases"), None)
    if not isinstance(cases, yaml.SequenceNode) or not isinstance(path[1], int):
        return None
    case = cases.value[path[1]]
    if not isinstance(case, yaml.MappingNode):
        return None
    name = next((v for k, v in case.value if getattr(k, "value", None) == "name"), None)
    return name.value if isinstance(name, yaml.ScalarNode) else None


def _syntax_error(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line to blame and the message: an unclosed quote or bracket at its start."""
    context, cmark, problem, pmark = exc.context, exc.context_mark, exc.problem, exc.problem_mark
    if context and cmark is not None and context.startswith(_UNCLOSED):
        where = f" on line {pmark.line + 1}" if pmark is not None else ""
        return cmark.line + 1, f"{context} that starts on this line: {problem}{where}"
    mark = pmark or cmark
    what = ", ".join(str(x) for x in (context, problem) if x)
    return (mark.line + 1 if mark is not None else None), what


def parse(text: str, file: str) -> Any:
    """Parse one YAML document into ``LineMap``/``LineSeq`` trees with line numbers."""
    loader = _Loader(text)
    node = None
    try:
        node = loader.get_single_node()
        return None if node is None else _Converter(loader).convert(node, (), 1)
    except _Refused as exc:
        case = _case_name(node, exc.path)
        field = dotted(exc.path[2:] if case else exc.path) or None
        raise CaseFileError(file, case, field, exc.line, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        line, what = _syntax_error(exc)
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


def bad_keys(tree: Any, prefix: tuple = ()) -> list[tuple[tuple, str, int]]:
    """Repeated (YAML silently keeps the last) and non-string keys: (path, message, line),
    in file order."""
    found = []
    if isinstance(tree, LineMap):
        found += [((*prefix, k), msg, ln) for k, msg, ln in tree.problems]
        children = list(tree.items())
    elif isinstance(tree, LineSeq):
        children = list(enumerate(tree))
    else:
        return []
    for key, value in children:
        found += bad_keys(value, (*prefix, key))
    return sorted(found, key=lambda h: h[2])


def count_values(tree: Any) -> int:
    """Scalars, lists and maps in a tree (the unit of ``MAX_VALUES``)."""
    if isinstance(tree, dict):
        return 1 + sum(count_values(v) for v in tree.values())
    if isinstance(tree, list):
        return 1 + sum(count_values(v) for v in tree)
    return 1


def get(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree
