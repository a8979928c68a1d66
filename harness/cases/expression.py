r"""The ``-k`` expression: which case ids to select, as in pytest.

The grammar::

    expression: expr? EOF
    expr:       and_expr ('or' and_expr)*
    and_expr:   not_expr ('and' not_expr)*
    not_expr:   'not' not_expr | '(' expr ')' | word
    word:       any run of characters other than whitespace, '(' and ')'
                that is not one of the keywords 'and', 'or', 'not'

A word matches an id that contains it, ignoring case (``grid[bf16``,
``sub/a.yml`` and ``KV`` are words). An empty expression selects
everything. The expression is parsed here by recursive descent and
evaluated as a tree of closures: user text is never ``eval``'d.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[str], bool]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
KEYWORDS = ("and", "or", "not")


class _Parser:
    """Recursive descent over the tokens of one expression."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _TOKEN.findall(expr)
        self.pos = 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"invalid -k expression {self.expr!r}: {what}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise self.error("unexpected end")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expression(self) -> Matcher:
        if not self.tokens:
            return lambda s: True
        matcher = self.expr_()
        if self.pos != len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.pos]!r}")
        return matcher

    def expr_(self) -> Matcher:
        terms = [self.and_expr()]
        while self.peek() == "or":
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else (lambda s: any(t(s) for t in terms))

    def and_expr(self) -> Matcher:
        terms = [self.not_expr()]
        while self.peek() == "and":
            self.take()
            terms.append(self.not_expr())
        return terms[0] if len(terms) == 1 else (lambda s: all(t(s) for t in terms))

    def not_expr(self) -> Matcher:
        if self.peek() == "not":
            self.take()
            inner = self.not_expr()
            return lambda s: not inner(s)
        token = self.take()
        if token == "(":
            inner = self.expr_()
            if self.take() != ")":
                raise self.error("expected ')'")
            return inner
        if token in (")", "and", "or"):
            raise self.error(f"unexpected {token!r}")
        word = token.lower()
        return lambda s: word in s.lower()


def compile_keyword(expr: str) -> Matcher:
    """A matcher for a ``-k`` expression over case ids (ValueError if malformed)."""
    return _Parser(expr).expression()
