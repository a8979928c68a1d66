"""Text from implementations and case files, made safe for each report format.

Violation messages carry whatever an implementation raised, and ids carry
file and case names; any of them may hold control characters, markup or
Markdown syntax. :func:`printable` writes every control character (but tab
and newline), lone surrogate and non-character as a visible escape such as
``\\x1b``, so that no message can drive a terminal, make junit.xml or
report.html ill-formed XML, or fail to encode as UTF-8. The Markdown helpers
add the escaping of a GitHub-flavoured table cell on top. Numbers as
results.jsonl holds them (non-finite ones as strings) are read and written
by :func:`num`, :func:`fmt` and :func:`sort_key`.
"""

from __future__ import annotations

import math
import re

# C0 but tab and newline, DEL, C1, lone surrogates, and the two non-characters
# XML 1.0 refuses
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_MD_SYNTAX = re.compile(r"([\\`*\[\]|~])")
_UNDERSCORES = re.compile(r"_+")
_TICKS = re.compile("`+")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(s: object) -> str:
    """``s`` with control characters (but tab and newline) written as escapes."""
    return _UNSAFE.sub(_escape, str(s))


def one_line(s: object) -> str:
    """:func:`printable` on one line: a newline shows as ``\\n``, a tab as a space."""
    return printable(s).replace("\n", "\\n").replace("\t", " ")


def first_line(s: object) -> str:
    """The text up to the first newline (only a newline ends a line here)."""
    return str(s).split("\n", 1)[0]


def xml_text(s: object) -> str:
    """Element content of well-formed XML."""
    return printable(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(s: object) -> str:
    """A double-quoted XML attribute value; tabs and newlines as character references,
    so that a parser gives them back instead of normalising them to spaces."""
    text = xml_text(s).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return f'"{text}"'


def md_text(s: object) -> str:
    """Plain text in a Markdown table cell: no emphasis, links, HTML or cell breaks."""
    s = _UNDERSCORES.sub(_underscores, _MD_SYNTAX.sub(r"\\\1", one_line(s)))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _underscores(m: re.Match[str]) -> str:
    """Underscores inside a word (``fp32_state``) cannot emphasise; others are escaped."""
    text, i, j = m.string, m.start(), m.end()
    inside = i > 0 and j < len(text) and text[i - 1].isalnum() and text[j].isalnum()
    return m.group() if inside else "\\_" * (j - i)


def md_code(s: object) -> str:
    """A code span in a Markdown table cell, whatever backticks or pipes ``s`` holds."""
    s = one_line(s).replace("|", "\\|")
    fence = "`" * (1 + max((len(t) for t in _TICKS.findall(s)), default=0))
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def num(x: object) -> float:
    """A float from a results.jsonl value: non-finite ones arrive as strings."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def fmt(x: object) -> str:
    v = num(x)
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def sort_key(x: object) -> float:
    """Ratios ordered with NaN as bad as Inf: both mean a broken element."""
    v = num(x)
    return math.inf if math.isnan(v) else v
