"""Text from implementations and case files, made safe for each report format.

Violation messages carry whatever an implementation raised, and ids carry
file and case names; any of them may hold control characters, markup or
Markdown syntax. :func:`printable` writes every control character (but tab
and newline), lone surrogate and non-character as a visible escape such as
``\\x1b``, so that no message can drive a terminal, make junit.xml or
report.html ill-formed XML, or fail to encode as UTF-8. The Markdown helpers
add the escaping of a GitHub-flavoured table cell on top.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

# C0 but tab and newline, DEL, C1, lone surrogates, and the two non-characters
# XML 1.0 refuses
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_MD_SYNTAX = re.compile(r"([\\`*_\[\]|~])")
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
    return escape(printable(s))


def xml_attr(s: object) -> str:
    """A quoted XML attribute value, newlines kept as character references."""
    return quoteattr(printable(s))


def md_text(s: object) -> str:
    """Plain text in a Markdown table cell: no emphasis, links, HTML or cell breaks."""
    s = _MD_SYNTAX.sub(r"\\\1", one_line(s))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_code(s: object) -> str:
    """A code span in a Markdown table cell, whatever backticks or pipes ``s`` holds."""
    s = one_line(s).replace("|", "\\|")
    fence = "`" * (1 + max((len(t) for t in _TICKS.findall(s)), default=0))
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"
