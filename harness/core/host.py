"""The host side: how many CPUs to size work by, and copies of tensors into
host arrays for the float64 checks (one home for both)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


def to_host(t: Any, new_array: Callable[[tuple[int, ...]], np.ndarray] | None = None) -> np.ndarray:
    """A torch tensor as a float32 host array (exact for every dtype the contract
    allows: NumPy has no bfloat16, and the copy is the slow part).

    ``new_array(shape)`` supplies the destination, so a check can copy straight
    into memory shared with its worker processes, or into a GPU array (any
    array torch can view through DLPack) when the check runs on the device.
    """
    if new_array is None:
        return t.detach().float().contiguous().cpu().numpy()
    dst, view = _destination(new_array, tuple(t.shape))
    view.copy_(t.detach())  # one pass: the cast and the layout change happen in the copy
    return dst


def to_host_rows(
    t: Any, index: Any, new_array: Callable[[tuple[int, ...]], np.ndarray] | None = None
) -> np.ndarray:
    """``to_host(t[index])`` for a tensor of row indices, in one pass where it can
    be: a float32 tensor's rows are gathered straight into the destination
    (strided, a transposed view say, or not), where ``t[index]`` would first
    gather them into a copy of its own."""
    import torch

    if new_array is None or t.dtype != torch.float32:
        return to_host(t[index], new_array)
    dst, view = _destination(new_array, (int(index.numel()), *t.shape[1:]))
    if view.device != t.device:
        view.copy_(t.detach()[index])
    else:
        torch.index_select(t.detach(), 0, index, out=view)
    return dst


def _destination(new_array: Callable[[tuple[int, ...]], np.ndarray], shape: tuple[int, ...]):
    """A new float32 array from ``new_array`` and a torch view of it (host or DLPack)."""
    import torch

    dst = new_array(shape)
    return dst, torch.from_numpy(dst) if isinstance(dst, np.ndarray) else torch.from_dlpack(dst)


def to_f64(t: Any) -> np.ndarray:
    """A torch tensor as a float64 host array of its own (the oracle's input)."""
    return to_host(t).astype(np.float64)
