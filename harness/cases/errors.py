"""``CaseFileError``: every mistake in a case file, located.

A bad case file found late (or silently accepted) costs far more than a
precise message at load time, so every problem the loader finds becomes one
of these, naming the file, the case, the field and the YAML line.
"""

from __future__ import annotations

import os

StrPath = str | os.PathLike
SHOWN_CHARS = 80  # of a value quoted in a message
PART_CHARS = 200  # of a case name, a field or a message in str(error)


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(value: object) -> str:
    """``repr(value)`` for a message: escaped, and short even for a huge value."""
    return clip(repr(value), SHOWN_CHARS)


def printable(text: str) -> str:
    """``text`` with newlines and other control characters escaped, so it stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _part(text: str) -> str:
    return clip(printable(text), PART_CHARS)


class CaseFileError(Exception):
    """A case file that cannot be used, located as precisely as possible.

    Raised by ``load_file``, it is the file's first error and ``errors``
    holds every error of the file, this one first (``collect_file`` returns
    them without raising).
    """

    errors: tuple[CaseFileError, ...] = ()

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
        """One line: ``file:line: case 'c', field 'f': message`` (parts escaped and clipped)."""
        file = printable(self.file)
        where = file if self.line is None else f"{file}:{self.line}"
        parts = []
        if self.case is not None:
            parts.append(f"case '{_part(self.case)}'")
        if self.field is not None:
            parts.append(f"field '{_part(self.field)}'")
        ctx = ", ".join(parts)
        message = clip(printable(self.message), 4 * PART_CHARS)
        return f"{where}: {ctx}: {message}" if ctx else f"{where}: {message}"


class DocProblem(Exception):
    """A problem at a path of the raw document (``('cases', 2, 'matrix')``).

    Raised where only the path is known; the loader turns it into a
    ``CaseFileError`` with the case, the field and the line.
    """

    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message
