"""``CaseFileError``: every mistake in a case file, located.

A bad case file found late (or silently accepted) costs far more than a
precise message at load time, so every problem the loader finds becomes one
of these, naming the file, the case, the field and the YAML line.
"""

from __future__ import annotations

import os

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


class DocProblem(Exception):
    """A problem at a path of the raw document (``('cases', 2, 'matrix')``).

    Raised where only the path is known; the loader turns it into a
    ``CaseFileError`` with the case, the field and the line.
    """

    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message
