"""Guarded backing buffers: ``guard | data | guard``, views cut from them, and
the bit-exact check that nothing outside the views changed.

A buffer's guards, and the *holes* of its data region (columns of every row
that no view covers), hold a sentinel. Comparing their bits afterwards shows
any write outside the tensors an implementation was given, NaN included.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

GUARD_BYTES = 256  # at least this many bytes of guard on each side of a buffer
MIN_GUARD_ELEMS = 64
# Finite in fp16 (max 65504), so a guard never reads as inf; compared as bits.
FLOAT_SENTINEL = -31337.0
# Never a valid slot and never PAD_SLOT_ID.
INT_SENTINELS: dict[torch.dtype, int] = {
    torch.int64: -123456789,
    torch.int32: -123456789,
    torch.int16: -12345,
    torch.int8: -123,
    torch.uint8: 0xA5,
}
# Integer dtype of each element size: the bits of a float, compared NaN-safely.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def guard_elems(dtype: torch.dtype) -> int:
    """Guard length in elements: at least GUARD_BYTES and MIN_GUARD_ELEMS."""
    return max(MIN_GUARD_ELEMS, GUARD_BYTES // dtype.itemsize)


@dataclass(frozen=True)
class BufferLayout:
    """Shape of one backing buffer: ``guard | rows x row_width | guard``.

    ``holes`` are column ranges ``(start, stop, description)`` of every row
    that no view covers and that must keep the sentinel; ``row_name`` is what
    a row is called in messages ("row", or "slot" for the state pool).
    """

    name: str
    dtype: torch.dtype
    rows: int
    row_width: int
    holes: tuple[tuple[int, int, str], ...] = ()
    row_name: str = "row"

    @property
    def guard(self) -> int:
        return guard_elems(self.dtype)

    @property
    def data_len(self) -> int:
        return self.rows * self.row_width

    @property
    def numel(self) -> int:
        return self.data_len + 2 * self.guard

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def ref(self, size: tuple[int, ...], stride: tuple[int, ...], start: int = 0) -> ViewRef:
        """A view of this buffer starting ``start`` elements into the data."""
        return ViewRef(self.name, self.dtype, tuple(size), tuple(stride), self.guard + start)


@dataclass(frozen=True)
class ViewRef:
    """Where a view lives: buffer, dtype, size, stride, and offset in elements
    of ``dtype`` from the start of the flat buffer (guard included)."""

    buffer: str
    dtype: torch.dtype
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int


@dataclass
class GuardedBuffer:
    """A layout and its flat storage."""

    layout: BufferLayout
    flat: torch.Tensor

    @property
    def name(self) -> str:
        return self.layout.name

    def data2d(self) -> torch.Tensor:
        """The data region as ``[rows, row_width]`` (guards excluded)."""
        lay = self.layout
        return self.flat[lay.guard : lay.guard + lay.data_len].view(lay.rows, lay.row_width)


def dense_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides of ``size`` (empty dims count as 1)."""
    strides, acc = [], 1
    for s in reversed(size):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def dense(name: str, dtype: torch.dtype, size: tuple[int, ...]) -> tuple[BufferLayout, ViewRef]:
    """A buffer holding exactly one dense tensor."""
    lay = BufferLayout(name, dtype, 1, math.prod(size))
    return lay, lay.ref(size, dense_strides(size))


def sentinel(dtype: torch.dtype) -> float | int:
    """The value guards and holes of a ``dtype`` buffer hold."""
    if dtype.is_floating_point:
        return FLOAT_SENTINEL
    if dtype not in INT_SENTINELS:
        raise ValueError(f"no guard sentinel for dtype {dtype}")
    return INT_SENTINELS[dtype]


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of the same elements, for bit-exact comparison (NaN-safe)."""
    if t.dtype.is_floating_point:
        return t.view(_BITS[t.dtype.itemsize])
    return t


@functools.cache
def _sentinel_bits(dtype: torch.dtype) -> int:
    return int(bits(torch.tensor([sentinel(dtype)], dtype=dtype)).item())


def allocate(lay: BufferLayout, device: torch.device) -> GuardedBuffer:
    """A buffer of layout ``lay`` on ``device``, every element the sentinel."""
    flat = torch.full((lay.numel,), sentinel(lay.dtype), dtype=lay.dtype, device=device)
    return GuardedBuffer(lay, flat)


def _typed(flat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``flat`` reinterpreted as ``dtype`` (same storage)."""
    if flat.dtype == dtype:
        return flat
    raw = flat.view(torch.uint8)
    size = dtype.itemsize
    return raw[: raw.numel() // size * size].view(dtype)


def materialize(buf: GuardedBuffer, ref: ViewRef) -> torch.Tensor:
    """The tensor ``ref`` describes, as a view of ``buf``'s storage."""
    return _typed(buf.flat, ref.dtype).as_strided(ref.size, ref.stride, ref.offset)


def first_index(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` (which has one)."""
    flat = int(mask.reshape(-1).to(torch.int8).argmax().item())
    return tuple(int(i) for i in np.unravel_index(flat, tuple(mask.shape)))


def _guard_messages(buf: GuardedBuffer, expected: int) -> list[str]:
    lay, flat_bits = buf.layout, bits(buf.flat)
    g, n, msgs = lay.guard, lay.data_len, []
    before = flat_bits[:g] != expected
    count = int(before.sum().item())
    if count:
        nearest = g - int(before.nonzero().max().item())
        msgs.append(
            f"{lay.name}: {count} elements changed in the guard before the buffer "
            f"(nearest at offset -{nearest})"
        )
    after = flat_bits[g + n :] != expected
    count = int(after.sum().item())
    if count:
        first = int(after.nonzero().min().item())
        msgs.append(
            f"{lay.name}: {count} elements changed in the guard after the buffer "
            f"(first at offset {first})"
        )
    return msgs


def _hole_messages(buf: GuardedBuffer, expected: int) -> list[str]:
    lay, msgs = buf.layout, []
    if not lay.holes or lay.rows == 0:
        return msgs
    data = bits(buf.data2d())
    for start, stop, what in lay.holes:
        bad = data[:, start:stop] != expected
        count = int(bad.sum().item())
        if not count:
            continue
        row, col = first_index(bad)
        if lay.row_name == "slot":
            n_rows = int(bad.any(dim=1).sum().item())
            msgs.append(
                f"{lay.name}: slot padding after slot {row} changed "
                f"({count} elements in {n_rows} slots)"
            )
        else:
            msgs.append(
                f"{lay.name}: {count} elements changed in {what} "
                f"(first at row {row}, column {start + col})"
            )
    return msgs


def changed_flags(buffers: list[GuardedBuffer]) -> list[bool]:
    """Whether each buffer's guards or holes changed, told with one device
    synchronisation for them all (``buffer_violations`` then says how)."""
    flags = []
    for buf in buffers:
        lay, expected, flat_bits = buf.layout, _sentinel_bits(buf.layout.dtype), bits(buf.flat)
        parts = [flat_bits[: lay.guard], flat_bits[lay.guard + lay.data_len :]]
        if lay.holes and lay.rows:
            data = bits(buf.data2d())
            parts += [data[:, start:stop] for start, stop, _ in lay.holes]
        flags.append(torch.stack([(p != expected).any() for p in parts]).any())
    return torch.stack(flags).tolist() if flags else []


def buffer_violations(buf: GuardedBuffer) -> list[str]:
    """Every element of ``buf``'s guards and holes that no longer holds the sentinel."""
    expected = _sentinel_bits(buf.layout.dtype)
    return _guard_messages(buf, expected) + _hole_messages(buf, expected)
