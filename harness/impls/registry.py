"""Finding implementations of the decode step by name.

This module is the one way the harness finds implementations. An impl name
is a built-in name (``packed``, ``baseline``, ``oracle``), the name of an
adapter bundled with the harness for an outside kernel (``fla``, whose
package is an optional extra), a name registered by an installed package
under the ``gdn_harness.implementations`` entry-point group,
``module:function`` for anything importable, or ``path/to/file.py:function``
for a file that is not on the import path. Only the built-ins are ``builtin``: cases that
expect an error exercise their wrappers' validation and are skipped for
everything else. Every implementation is a callable with the contract's
signature (docs/design.md).

An implementation may carry an optional attribute ``unsupported(case) ->
str | None``: a reason when it cannot express a case (a layout, a dtype);
such cases are skipped with that reason instead of failing. An
implementation that cannot run on this machine (its package is missing, it
needs a GPU) should fail to import with an ``ImportError`` that says why;
``gdn-harness impls`` shows that reason.

An installed package registers implementations in its ``pyproject.toml``::

    [project.entry-points."gdn_harness.implementations"]
    mykernel = "mypkg.gdn:decode"
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.core.conventions import DEFAULT as DEFAULT_CONVENTIONS
from harness.core.conventions import Conventions, of_callable, with_options

ENTRY_POINT_GROUP = "gdn_harness.implementations"
BUILTINS = ("packed", "baseline", "oracle")
# Adapters for outside kernels that ship with the harness (harness/adapters/).
# They are found like entry points and loaded lazily; when their package is
# missing, the adapter's module raises an ImportError that says how to get it.
ADAPTERS: dict[str, str] = {
    "fla": "harness.impls.adapters.fla:fla_decode",
    "vllm": "harness.impls.adapters.vllm:vllm_packed_decode",
    "vllm-sigmoid-gating": "harness.impls.adapters.vllm:vllm_sigmoid_gating_decode",
    "sglang": "harness.impls.adapters.sglang:sglang_packed_decode",
    "flashinfer": "harness.impls.adapters.flashinfer:flashinfer_decode",
    "flashinfer-bf16": "harness.impls.adapters.flashinfer:flashinfer_bf16_decode",
}

DecodeFn = Callable[..., None]


class ImplError(LookupError):
    """An impl name that cannot be resolved."""


@dataclass(frozen=True)
class Implementation:
    """A resolved implementation and what the harness needs to know about it."""

    spec: str  # the impl name it was loaded by
    fn: DecodeFn
    builtin: bool  # built-in wrappers are the ones error cases exercise
    conventions: Conventions = DEFAULT_CONVENTIONS  # how it treats padding rows

    def unsupported(self, case: Any) -> str | None:
        check = getattr(self.fn, "unsupported", None)
        return check(case) if check is not None else None

    def with_options(self, pad: str | None = None, pad_output: str | None = None) -> Implementation:
        """This implementation under the command line's ``--pad`` / ``--pad-output``."""
        return replace(self, conventions=with_options(self.conventions, pad, pad_output))


def _declared(name: str, fn: DecodeFn, builtin: bool) -> Implementation:
    """An Implementation with the conventions ``fn`` declares (a bad declaration
    is the implementation's error, reported when it loads)."""
    try:
        conventions = of_callable(fn)
    except ValueError as exc:
        raise ImplError(f"implementation {name!r}: {exc}") from None
    return Implementation(name, fn, builtin, conventions)


def _oracle() -> DecodeFn:
    from harness.impls.oracle import oracle_decode

    return oracle_decode


def _packed() -> DecodeFn:
    from kernels import packed_decode

    return packed_decode


def _baseline() -> DecodeFn:
    from kernels import baseline_decode

    return baseline_decode


_BUILTIN_LOADERS: dict[str, Callable[[], DecodeFn]] = {
    "packed": _packed,
    "baseline": _baseline,
    "oracle": _oracle,
}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Named implementations beyond the built-ins: installed entry points, then
    the bundled adapters (which an installed package cannot shadow)."""
    eps = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name, value in ADAPTERS.items():
        eps[name] = metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    return eps


def available_impls() -> list[str]:
    """Names that ``resolve_impl`` accepts without a ``module:function`` path.

    A listed name may still fail to load here (a missing package, no GPU):
    ``load_implementation`` says why.
    """
    return [*BUILTINS, *sorted(n for n in _entry_points() if n not in BUILTINS)]


def _import_module(module_name: str) -> Any:
    """Import ``module_name``; a module of the current directory is found too.

    ``python -m`` puts the current directory on ``sys.path``, a console
    script (``gdn-harness``) does not: ``--impl mymodule:decode`` next to the
    user's own files should work either way. The directory is appended, so
    it never shadows an installed module.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        cwd = os.getcwd()
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def _looks_like_file(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def _import_file(path: str, spec: str) -> Any:
    """Import the Python file ``path`` as a module of its own (not on ``sys.path``).

    The module is named after the file's absolute path, so two files of the
    same name are two modules, and registered in ``sys.modules`` before it
    runs, as dataclasses and pickling expect.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ImplError(
            f"implementation {spec!r}: no such file {path!r} "
            f"(from {os.getcwd()}); give path/to/file.py:function or module:function"
        )
    file = file.resolve()
    name = "gdn_impl_" + re.sub(r"\W", "_", str(file.with_suffix("")))
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise ImplError(f"implementation {spec!r}: {path!r} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ImplError(
            f"implementation {spec!r}: importing {path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_named(module_name: str, spec: str) -> Any:
    try:
        return _import_module(module_name)
    except Exception as exc:  # any import failure is the user's spec to fix
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.partition(".")[0]:
            hint = "; give module:function for a module, path/to/file.py:function for a file"
        raise ImplError(
            f"cannot import module {module_name!r} for implementation {spec!r}: "
            f"{type(exc).__name__}: {exc}{hint}"
        ) from exc


def _import_callable(spec: str) -> DecodeFn:
    """``module:attr`` or ``path/to/file.py:attr`` (``attr`` may be dotted)."""
    module_name, _, attr = spec.rpartition(":")
    if _looks_like_file(module_name):
        module = _import_file(module_name, spec)
    else:
        module = _import_named(module_name, spec)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImplError(f"module {module_name!r} has no attribute {attr!r} ({spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImplError(f"{spec!r} is not callable")
    return obj


def interpret_without_cuda() -> None:
    """Set ``TRITON_INTERPRET=1`` when no CUDA device is present and it is unset.

    Triton reads the variable when ``@triton.jit`` decorates a kernel, so it
    must be set before any implementation module is imported: a user's module
    that imports Triton first would otherwise define kernels that cannot run
    on a CPU-only machine.
    """
    if "TRITON_INTERPRET" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def load_implementation(name: str) -> Implementation:
    """Resolve an impl name to an :class:`Implementation`, or raise :class:`ImplError`."""
    interpret_without_cuda()
    if name in _BUILTIN_LOADERS:
        return _declared(name, _BUILTIN_LOADERS[name](), builtin=True)
    if ":" in name:
        return _declared(name, _import_callable(name), builtin=False)
    if _looks_like_file(name):
        raise ImplError(f"implementation {name!r}: name the function too: {name}:function")
    eps = _entry_points()
    if name in eps:
        try:
            fn = eps[name].load()
        except Exception as exc:
            if name in ADAPTERS and isinstance(exc, ImportError):
                raise ImplError(f"implementation {name!r}: {exc}") from exc
            raise ImplError(
                f"implementation {name!r} (entry point {eps[name].value}) failed "
                f"to load: {type(exc).__name__}: {exc}"
            ) from exc
        return _declared(name, fn, builtin=False)
    raise ImplError(f"unknown implementation {name!r}; {_known_names()}")


def _known_names() -> str:
    """The names this machine knows, saying which of them cannot load here."""
    names = available_impls()
    missing = []
    for name in names:
        if name not in BUILTINS:
            try:
                load_implementation(name)
            except ImplError:
                missing.append(name)
    text = f"impl names: {', '.join(names)}"
    if missing:
        text += f" (not loadable here: {', '.join(missing)}; 'gdn-harness impls' says why)"
    return text + "; or module:function, or path/to/file.py:function"


def resolve_impl(name: str) -> DecodeFn:
    """Return a callable with the contract's signature for an impl name."""
    return load_implementation(name).fn
