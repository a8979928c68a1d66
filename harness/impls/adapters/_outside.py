"""What the adapters for the field's kernels (vLLM, SGLang, FlashInfer) share.

Each of those packages keeps its decode op in a module that moved between
releases, and each is heavy and optional. ``import_first`` finds the op where
the installed release keeps it and turns every way of not finding it into an
``ImportError`` that ``gdn-harness impls`` can print: the package is missing
(with the install command), the package is there but none of the known
module paths is (with its version and the paths tried), or the module fails
to import (with the error).

The rest are the small pieces of data movement the adapters have in common:
the contract's ``mixed_qkv`` split into q/k/v views, the head counts
recovered from the shapes, and the row mask a padding convention implies.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

import torch

from harness.core.layouts import LAYOUTS, VK

# The values of the two convention keys an implementation may declare.
PAD_NEGATIVE = "negative"  # index < 0 is padding; slot 0 is a live slot
PAD_NONPOSITIVE = "nonpositive"  # index <= 0 is padding; slot 0 is the null block
OUT_ZERO = "zero"  # padding rows of out are written as exact zeros
OUT_UNWRITTEN = "unwritten"  # padding rows of out are left as they were


def interpret_without_cuda() -> None:
    """Set ``TRITON_INTERPRET=1`` before an outside package defines its Triton
    kernels, on a machine without CUDA (the kernels cannot run there otherwise)."""
    if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def installed_version(dist: str, module: ModuleType | None = None) -> str:
    """The installed release of distribution ``dist``, or ``module.__version__``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric release of ``version``: "0.20.1rc1.dev3" -> (0, 20, 1)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def import_first(
    package: str, candidates: Sequence[str], attr: str, install_hint: str, dist: str
) -> tuple[ModuleType, Any]:
    """The first of ``candidates`` that imports and has ``attr``, and that attribute.

    Raises ``ImportError`` saying what is missing: ``install_hint`` when
    ``package`` itself is absent, the installed version and the module paths
    tried when none of them holds ``attr``, the import error otherwise.
    """
    top = _import_top(package, install_hint)
    tried = []
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                tried.append(name)
                continue  # this release keeps the op elsewhere
            raise ImportError(
                f"{package} is installed but {name} cannot be imported: {exc}"
            ) from exc
        except Exception as exc:  # a release that does not work with this torch/Triton
            raise ImportError(
                f"{package} is installed but {name} cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
        if hasattr(module, attr):
            return module, getattr(module, attr)
        tried.append(f"{name} (no {attr})")
    version = installed_version(dist, top)
    raise ImportError(
        f"{package} {version} is installed but has no {attr}; looked in: " + ", ".join(tried)
    )


def _import_top(package: str, install_hint: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name == package:
            raise ImportError(install_hint) from exc
        raise ImportError(f"{package} is installed but cannot be imported: {exc}") from exc
    except Exception as exc:
        raise ImportError(
            f"{package} is installed but cannot be imported: {type(exc).__name__}: {exc}"
        ) from exc


def require_vk(state_layout: str, reason: str) -> None:
    """Refuse a state layout other than ``vk`` for a kernel that keeps only that
    one (``reason`` says so in the kernel's words)."""
    if state_layout != VK:
        raise ValueError(f"state_layout: {reason}, got {state_layout!r}")


def dims(
    mixed_qkv: torch.Tensor, state: torch.Tensor, state_layout: str = VK
) -> tuple[int, int, int, int]:
    """``(H, HV, K, V)`` from ``mixed_qkv [B, 2*H*K + HV*V]`` and a pool in
    ``state_layout`` (``[N, HV, V, K]`` for vk, ``[N, HV, K, V]`` for kv); a
    ``ValueError`` when the layout is unknown or the widths do not fit."""
    if mixed_qkv.dim() != 2 or state.dim() != 4:
        raise ValueError(
            f"mixed_qkv must be 2-D and state 4-D, got shapes {tuple(mixed_qkv.shape)} "
            f"and {tuple(state.shape)}"
        )
    if state_layout not in LAYOUTS:
        raise ValueError(f"state_layout: must be one of {LAYOUTS}, got {state_layout!r}")
    HV = state.shape[1]
    inner = state.shape[2], state.shape[3]
    V, K = inner if state_layout == VK else inner[::-1]
    H, rest = divmod(mixed_qkv.shape[1] - HV * V, 2 * K)
    if rest or H <= 0 or HV % H:
        raise ValueError(
            f"mixed_qkv width {mixed_qkv.shape[1]} does not fit 2*H*K + HV*V with "
            f"K={K}, V={V}, HV={HV} and HV a multiple of H"
        )
    return H, HV, K, V


def split_qkv(
    mixed_qkv: torch.Tensor, H: int, HV: int, K: int, V: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views ``q [B, H, K]``, ``k [B, H, K]``, ``v [B, HV, V]`` of ``mixed_qkv``
    (same memory, its row stride kept)."""
    q = mixed_qkv[:, : H * K].unflatten(1, (H, K))
    k = mixed_qkv[:, H * K : 2 * H * K].unflatten(1, (H, K))
    v = mixed_qkv[:, 2 * H * K : 2 * H * K + HV * V].unflatten(1, (HV, V))
    return q, k, v


def live_rows(state_indices: torch.Tensor, pad: str) -> torch.Tensor:
    """``[B]`` bool: the rows that are not padding under convention ``pad``."""
    if pad == PAD_NONPOSITIVE:
        return state_indices > 0
    return state_indices >= 0


def keep_padding_rows(out: torch.Tensor, fresh: torch.Tensor, live: torch.Tensor) -> None:
    """``out[live] = fresh[live]`` without a host sync; padding rows keep their bits."""
    out.copy_(torch.where(live.view(-1, *([1] * (out.dim() - 1))), fresh.to(out.dtype), out))


def declare(fn: Any, *, pad: str, pad_output: str, unsupported: Any) -> None:
    """Attach the attributes the registry and the runner read."""
    fn.conventions = {"pad": pad, "pad_output": pad_output}
    fn.unsupported = unsupported


__all__ = [
    "OUT_UNWRITTEN",
    "OUT_ZERO",
    "PAD_NEGATIVE",
    "PAD_NONPOSITIVE",
    "declare",
    "dims",
    "import_first",
    "installed_version",
    "interpret_without_cuda",
    "keep_padding_rows",
    "live_rows",
    "require_vk",
    "split_qkv",
    "version_tuple",
]
