"""Build the inputs of one case, exactly as the case says, inside guarded buffers.

Every tensor handed to an implementation is a view into a flat 1-D *backing
buffer* laid out as ``guard | data | guard``. The guards, and every element of
the data region that no view covers (the unused columns of the wider
``mixed_qkv`` buffer, the row padding of ``a``/``b``, the padding after each
state slot), hold a sentinel, so writes outside the tensors are caught
bit-exactly afterwards (:meth:`CaseInputs.guard_violations`).

Values are drawn on the CPU from ``torch.Generator`` streams derived from the
case seed, one stream per tensor and per decode step, then rounded to their
dtypes and copied to the device: equal specs build bit-identical inputs on
any machine, and adding a step never changes the earlier ones. Nothing
depends on the device RNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.core.dtypes import dtype as dtype_row
from harness.core.dtypes import torch_dtype
from harness.core.host import cpu_count
from harness.core.layouts import PAD_SLOT_ID, slot_shape
from harness.core.spec import CaseSpec

ARG_NAMES = ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state", "state_indices", "out")
INPUT_NAMES = ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state_indices")

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
# Pools with more elements than this get random values only in the slots that
# live rows name; the others get a cheap deterministic pattern on the device.
RANDOM_STATE_LIMIT = 1 << 24
_CHUNK_ELEMS = 1 << 24  # elements per chunk when filling big pools

_TAGS = {"qkv": 1, "a": 2, "b": 3, "A_log": 4, "dt_bias": 5, "state": 6, "state_chunk": 7}
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


# --- slots ---------------------------------------------------------------------


def _padding_mask(spec: CaseSpec) -> list[bool]:
    """Which rows are padding, per ``SlotSpec.padding``."""
    s, B = spec.slots, spec.B
    if s.padding == "none":
        return [False] * B
    if s.padding == "all":
        return [True] * B
    if s.padding == "alternate":
        return [i % 2 == 1 for i in range(B)]
    if s.padding == "first":
        return [i == 0 for i in range(B)]
    if s.padding == "last":
        return [i == B - 1 for i in range(B)]
    if s.padding == "random":
        draws = np.random.default_rng(s.pad_seed).random(B)
        return [bool(x < s.pad_fraction) for x in draws]
    raise ValueError(f"unknown slots.padding {s.padding!r}")


def _live_slots(spec: CaseSpec, n_live: int) -> list[int]:
    """Distinct slots for ``n_live`` rows, per ``SlotSpec.order``."""
    order, N = spec.slots.order, spec.pool
    if n_live > N:
        raise ValueError(f"{n_live} live rows need distinct slots but the pool has {N}")
    if order == "identity":
        return list(range(n_live))
    if order == "reverse":
        return [N - 1 - i for i in range(n_live)]
    if order == "permutation":
        rng = np.random.default_rng(spec.seed % 2**64)
        return [int(x) for x in rng.choice(N, n_live, replace=False)]
    if order == "spread":
        return [i * N // n_live for i in range(n_live)]
    raise ValueError(f"unknown slots.order {order!r}")


def slot_indices(spec: CaseSpec) -> list[int]:
    """The ``state_indices`` of a case: a slot per row, ``-1`` for padding rows.

    Explicit ``slots.indices`` win; otherwise the padding pattern picks the
    padding rows and the order gives the live rows (in row order) distinct
    slots. ``slot0_live`` then moves slot 0 onto the first live row, swapping
    with the row that held it, so the "slot 0 treated as padding" bug shows.
    """
    if spec.slots.indices is not None:
        return [int(i) for i in spec.slots.indices]
    padded = _padding_mask(spec)
    live = [i for i in range(spec.B) if not padded[i]]
    slots = _live_slots(spec, len(live))
    if spec.slots.slot0_live and slots and slots[0] != 0:
        if 0 in slots:
            j = slots.index(0)
            slots[0], slots[j] = slots[j], slots[0]
        else:
            slots[0] = 0
    result = [PAD_SLOT_ID] * spec.B
    for row, slot in zip(live, slots, strict=True):
        result[row] = slot
    return result


# --- layout --------------------------------------------------------------------


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


def _dense_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for s in reversed(size):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def _dense(name: str, dtype: torch.dtype, size: tuple[int, ...]) -> tuple[BufferLayout, ViewRef]:
    """A buffer holding exactly one dense tensor."""
    lay = BufferLayout(name, dtype, 1, math.prod(size))
    return lay, lay.ref(size, _dense_strides(size))


def _qkv_layout(spec: CaseSpec, act: torch.dtype) -> tuple[BufferLayout, ViewRef]:
    off, pad, D = spec.layout.qkv_col_offset, spec.layout.qkv_row_pad, spec.qkv_width
    width = off + D + pad
    holes = []
    if off:
        holes.append((0, off, "the unused columns before mixed_qkv"))
    if pad:
        holes.append((off + D, width, "the unused columns after mixed_qkv"))
    lay = BufferLayout("mixed_qkv", act, spec.B, width, tuple(holes))
    return lay, lay.ref((spec.B, D), (width, 1), off)


def _ab_layouts(spec: CaseSpec, act: torch.dtype) -> tuple[list[BufferLayout], dict]:
    B, HV, pad = spec.B, spec.HV, spec.layout.ab_row_pad
    if spec.layout.ab_packed:
        width = 2 * HV + pad
        holes = ((2 * HV, width, "the row padding after a and b"),) if pad else ()
        lay = BufferLayout("ab", act, B, width, holes)
        refs = {"a": lay.ref((B, HV), (width, 1), 0), "b": lay.ref((B, HV), (width, 1), HV)}
        return [lay], refs
    layouts, refs = [], {}
    for name in ("a", "b"):
        holes = ((HV, HV + pad, f"the row padding of {name}"),) if pad else ()
        lay = BufferLayout(name, act, B, HV + pad, holes)
        layouts.append(lay)
        refs[name] = lay.ref((B, HV), (HV + pad, 1))
    return layouts, refs


def _state_layout(spec: CaseSpec) -> tuple[BufferLayout, ViewRef]:
    HV, K, V, pad = spec.HV, spec.K, spec.V, spec.layout.state_slot_pad
    slot = HV * V * K
    holes = ((slot, slot + pad, "slot padding"),) if pad else ()
    dtype = torch_dtype(spec.state_dtype)
    lay = BufferLayout("state", dtype, spec.pool, slot + pad, holes, row_name="slot")
    inner = slot_shape(spec.layout.state_layout, K, V)
    size = (spec.pool, HV, *inner)
    return lay, lay.ref(size, (slot + pad, V * K, inner[1], 1))


def _layout(spec: CaseSpec) -> tuple[list[BufferLayout], dict[str, ViewRef]]:
    """Every backing buffer of a case and where each argument lives in them."""
    act = torch_dtype(spec.act_dtype)
    param = act if spec.param_dtype == "act" else torch_dtype(spec.param_dtype)
    layouts: list[BufferLayout] = []
    refs: dict[str, ViewRef] = {}
    lay, refs["mixed_qkv"] = _qkv_layout(spec, act)
    layouts.append(lay)
    ab, ab_refs = _ab_layouts(spec, act)
    layouts += ab
    refs.update(ab_refs)
    for name, dtype, size in (
        ("A_log", param, (spec.HV,)),
        ("dt_bias", param, (spec.HV,)),
        ("state_indices", torch_dtype(spec.index_dtype), (spec.B,)),
        ("out", act, (spec.B, spec.HV, spec.V)),
    ):
        lay, refs[name] = _dense(name, dtype, size)
        layouts.append(lay)
    lay, refs["state"] = _state_layout(spec)
    layouts.append(lay)
    return layouts, refs


def estimate_bytes(spec: CaseSpec) -> int:
    """Device bytes of one copy of a case's inputs (backing buffers, pads and
    guards included), so runners can skip or chunk cases that would not fit.
    Temporaries of the build (at most a few hundred MiB) are not counted."""
    return sum(lay.nbytes for lay in _layout(spec)[0])


# --- sentinels and bit views ------------------------------------------------------


def _sentinel(dtype: torch.dtype) -> float | int:
    if dtype.is_floating_point:
        return FLOAT_SENTINEL
    if dtype not in INT_SENTINELS:
        raise ValueError(f"no guard sentinel for dtype {dtype}")
    return INT_SENTINELS[dtype]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of the same elements, for bit-exact comparison (NaN-safe)."""
    if t.dtype.is_floating_point:
        return t.view(_BITS[t.dtype.itemsize])
    return t


def _sentinel_bits(dtype: torch.dtype) -> int:
    return int(_bits(torch.tensor([_sentinel(dtype)], dtype=dtype)).item())


def _allocate(lay: BufferLayout, device: torch.device) -> GuardedBuffer:
    flat = torch.full((lay.numel,), _sentinel(lay.dtype), dtype=lay.dtype, device=device)
    return GuardedBuffer(lay, flat)


def _typed(flat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``flat`` reinterpreted as ``dtype`` (same storage)."""
    if flat.dtype == dtype:
        return flat
    raw = flat.view(torch.uint8)
    size = dtype.itemsize
    return raw[: raw.numel() // size * size].view(dtype)


def _materialize(buf: GuardedBuffer, ref: ViewRef) -> torch.Tensor:
    return _typed(buf.flat, ref.dtype).as_strided(ref.size, ref.stride, ref.offset)


def _first_index(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` (which has one)."""
    flat = int(mask.reshape(-1).to(torch.int8).argmax().item())
    return tuple(int(i) for i in np.unravel_index(flat, tuple(mask.shape)))


def _guard_messages(buf: GuardedBuffer, sentinel: int) -> list[str]:
    lay, bits = buf.layout, _bits(buf.flat)
    g, n, msgs = lay.guard, lay.data_len, []
    before = bits[:g] != sentinel
    count = int(before.sum().item())
    if count:
        nearest = g - int(before.nonzero().max().item())
        msgs.append(
            f"{lay.name}: {count} elements changed in the guard before the buffer "
            f"(nearest at offset -{nearest})"
        )
    after = bits[g + n :] != sentinel
    count = int(after.sum().item())
    if count:
        first = int(after.nonzero().min().item())
        msgs.append(
            f"{lay.name}: {count} elements changed in the guard after the buffer "
            f"(first at offset {first})"
        )
    return msgs


def _hole_messages(buf: GuardedBuffer, sentinel: int) -> list[str]:
    lay, msgs = buf.layout, []
    if not lay.holes or lay.rows == 0:
        return msgs
    data = _bits(buf.data2d())
    for start, stop, what in lay.holes:
        bad = data[:, start:stop] != sentinel
        count = int(bad.sum().item())
        if not count:
            continue
        row, col = _first_index(bad)
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


def _buffer_violations(buf: GuardedBuffer) -> list[str]:
    sentinel = _sentinel_bits(buf.layout.dtype)
    return _guard_messages(buf, sentinel) + _hole_messages(buf, sentinel)


# --- values --------------------------------------------------------------------


def _generator(spec: CaseSpec, tensor: str, step: int = 0) -> torch.Generator:
    """An independent CPU stream per (seed, tensor, step)."""
    seq = np.random.SeedSequence([spec.seed % 2**64, _TAGS[tensor], step])
    word = int(seq.generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(word)


def _tiny(x: torch.Tensor, norm: float, gen: torch.Generator) -> torch.Tensor:
    """Rescale each head vector (last dim) to ``norm`` times 2**U(-1, 1)."""
    factor = torch.exp2(torch.rand(x.shape[:-1], generator=gen) * 2 - 1) * norm
    length = x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return x / length * factor.unsqueeze(-1)


def _qkv_values(spec: CaseSpec, step: int) -> torch.Tensor:
    """``[B, 2*H*K + HV*V]`` fp32 on CPU: q, k, v of one step."""
    gen, vals, B = _generator(spec, "qkv", step), spec.values, spec.B
    q = torch.randn(B, spec.H, spec.K, generator=gen) * vals.qkv_std
    k = torch.randn(B, spec.H, spec.K, generator=gen) * vals.qkv_std
    v = torch.randn(B, spec.HV, spec.V, generator=gen) * vals.qkv_std
    if vals.tiny_qk:
        q = _tiny(q, vals.tiny_qk_norm, gen)
        k = _tiny(k, vals.tiny_qk_norm, gen)
    return torch.cat([q.reshape(B, -1), k.reshape(B, -1), v.reshape(B, -1)], dim=1)


def _gate_values(spec: CaseSpec, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` of one step, fp32 on CPU."""
    vals, shape = spec.values, (spec.B, spec.HV)
    a = torch.randn(shape, generator=_generator(spec, "a", step)) * vals.gate_std + vals.gate_mean
    b = torch.randn(shape, generator=_generator(spec, "b", step)) * vals.beta_std
    return a, b


def _param_values(spec: CaseSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_log`` and ``dt_bias``, fp32 on CPU."""
    vals = spec.values
    u = torch.rand(spec.HV, generator=_generator(spec, "A_log"), dtype=torch.float64)
    A_log = (u * (vals.a_log_hi - vals.a_log_lo) + vals.a_log_lo).float()
    dt_bias = torch.randn(spec.HV, generator=_generator(spec, "dt_bias")) * vals.dt_bias_std
    return A_log, dt_bias


def _store(view: torch.Tensor, values: torch.Tensor) -> None:
    """Round on the CPU, then copy into the (strided, device) view."""
    view.copy_(values.to(view.dtype))


def _fill_pattern(slots: torch.Tensor, std: float) -> None:
    """Cheap deterministic values for every slot, computed on the device.

    Element ``i`` (slot-major, pads skipped) gets ``((i * 40503) mod 65521)``
    mapped to ``[-1, 1]`` times ``std * sqrt(3)``: integer arithmetic plus
    two correctly rounded fp32 ops, so it is the same on every device.
    """
    N, E = slots.shape
    rows = max(1, _CHUNK_ELEMS // max(E, 1))
    amp = std * math.sqrt(3.0)
    for s0 in range(0, N, rows):
        s1 = min(N, s0 + rows)
        idx = torch.arange(s0 * E, s1 * E, dtype=torch.int64, device=slots.device)
        unit = ((idx * 40503) % 65521).to(torch.float32) * (2.0 / 65520) - 1.0
        slots[s0:s1].copy_((unit * amp).view(s1 - s0, E))


def _fill_state(buf: GuardedBuffer, spec: CaseSpec, indices: list[int]) -> None:
    """Random slots (all, or those live rows name on big pools); pattern elsewhere."""
    N, E = spec.pool, spec.HV * spec.V * spec.K
    slots = buf.data2d()[:, :E]
    std = spec.values.state_std
    if N * E <= RANDOM_STATE_LIMIT:
        _store(slots, torch.randn(N, E, generator=_generator(spec, "state")) * std)
        return
    _fill_pattern(slots, std)
    live = sorted({s for s in indices if 0 <= s < N})
    rows = max(1, _CHUNK_ELEMS // max(E, 1))
    chunks = [live[i : i + rows] for i in range(0, len(live), rows)]

    def values(i: int) -> torch.Tensor:  # a stream per chunk: chunks are drawn in parallel
        gen = _generator(spec, "state_chunk", i)
        return (torch.randn(len(chunks[i]), E, generator=gen) * std).to(slots.dtype)

    with ThreadPoolExecutor(max_workers=_draw_threads(len(chunks))) as pool:
        for chunk, vals in zip(chunks, pool.map(values, range(len(chunks))), strict=True):
            slots[torch.tensor(chunk, device=slots.device)] = vals.to(slots.device)


def _draw_threads(chunks: int) -> int:
    """Threads drawing the live slots of a big pool (torch releases the GIL)."""
    return max(1, min(chunks, cpu_count(), 16))


# --- inputs --------------------------------------------------------------------


@dataclass
class CaseInputs:
    """The eight arguments of one call, as views into guarded backing buffers.

    ``buffers`` maps buffer name -> :class:`GuardedBuffer`; ``refs`` maps each
    argument name to the :class:`ViewRef` it was cut from, or None for a
    loose tensor made by an override (e.g. moved to the meta device).
    """

    mixed_qkv: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    A_log: torch.Tensor
    dt_bias: torch.Tensor
    state: torch.Tensor
    state_indices: torch.Tensor
    out: torch.Tensor
    scale: float
    use_qk_l2norm: bool = True
    state_layout: str = "vk"
    buffers: dict[str, GuardedBuffer] = field(default_factory=dict)
    refs: dict[str, ViewRef | None] = field(default_factory=dict)

    @classmethod
    def from_buffers(
        cls,
        buffers: dict[str, GuardedBuffer],
        refs: dict[str, ViewRef | None],
        loose: Mapping[str, torch.Tensor],
        **kwargs,
    ) -> CaseInputs:
        """Cut every argument from its buffer (or take it from ``loose``)."""
        tensors = {}
        for name in ARG_NAMES:
            ref = refs[name]
            tensors[name] = loose[name] if ref is None else _materialize(buffers[ref.buffer], ref)
        return cls(**tensors, **kwargs, buffers=buffers, refs=dict(refs))

    @property
    def device(self) -> torch.device:
        """The device the backing buffers live on."""
        return next(iter(self.buffers.values())).flat.device

    def args(self) -> tuple:
        """The eight positional arguments in contract order."""
        return tuple(getattr(self, name) for name in ARG_NAMES)

    def kwargs(self) -> dict:
        """The keyword arguments of the contract."""
        return {
            "scale": self.scale,
            "use_qk_l2norm": self.use_qk_l2norm,
            "state_layout": self.state_layout,
        }

    def clone(self) -> CaseInputs:
        """A fresh copy with the identical layout (offsets, strides, guards)."""
        buffers = {n: GuardedBuffer(b.layout, b.flat.clone()) for n, b in self.buffers.items()}
        loose = {n: getattr(self, n).clone() for n in ARG_NAMES if self.refs[n] is None}
        return CaseInputs.from_buffers(buffers, self.refs, loose, **self.kwargs())

    def poison_out(self) -> None:
        """Fill ``out`` with NaN so unwritten elements show (guards untouched)."""
        if self.out.dtype.is_floating_point and self.out.device.type != "meta":
            self.out.fill_(float("nan"))

    def guard_violations(self) -> list[str]:
        """Every change to an element outside the views, checked bit-exactly."""
        return [msg for buf in self.buffers.values() for msg in _buffer_violations(buf)]

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Bit-exact copies of the read-only inputs, for :meth:`changed_inputs`."""
        tensors = ((n, getattr(self, n)) for n in INPUT_NAMES)
        return {n: t.clone() for n, t in tensors if t.device.type != "meta"}

    def changed_inputs(self, snapshot: Mapping[str, torch.Tensor]) -> list[str]:
        """Which inputs differ (bitwise) from ``snapshot``; they must not."""
        msgs = []
        for name, before in snapshot.items():
            now = getattr(self, name)
            if now.shape != before.shape or now.dtype != before.dtype:
                msgs.append(f"{name}: shape or dtype changed")
                continue
            diff = _bits(now) != _bits(before)
            count = int(diff.sum().item())
            if count:
                msgs.append(
                    f"{name}: {count} of {now.numel()} elements changed "
                    f"(first at index {_first_index(diff)})"
                )
        return msgs

    def load_step(self, spec: CaseSpec, step: int) -> None:
        """Write step ``step``'s activations (mixed_qkv, a, b) into the views in
        place; step 0 is what :func:`build_inputs` wrote. Parameters, indices and
        the state are left alone: the caller carries the state."""
        _store(self.mixed_qkv, _qkv_values(spec, step))
        a, b = _gate_values(spec, step)
        _store(self.a, a)
        _store(self.b, b)

    def set_view(self, name: str, buf: GuardedBuffer | None, ref: ViewRef) -> None:
        """Point argument ``name`` at ``ref`` (adding ``buf`` if new); drop
        buffers no argument uses any more."""
        if buf is not None:
            self.buffers[buf.name] = buf
        self.refs[name] = ref
        setattr(self, name, _materialize(self.buffers[ref.buffer], ref))
        self._drop_unused()

    def set_loose(self, name: str, tensor: torch.Tensor) -> None:
        """Make argument ``name`` a tensor outside the guarded buffers."""
        self.refs[name] = None
        setattr(self, name, tensor)
        self._drop_unused()

    def _drop_unused(self) -> None:
        used = {ref.buffer for ref in self.refs.values() if ref is not None}
        self.buffers = {n: b for n, b in self.buffers.items() if n in used}


def build_inputs(spec: CaseSpec, device: str | torch.device = "cpu") -> CaseInputs:
    """Build a case's inputs on ``device``; ``out`` starts poisoned (NaN)."""
    device = torch.device(device)
    layouts, refs = _layout(spec)
    buffers = {lay.name: _allocate(lay, device) for lay in layouts}
    inputs = CaseInputs.from_buffers(
        buffers,
        refs,
        {},
        scale=spec.effective_scale,
        use_qk_l2norm=spec.use_qk_l2norm,
        state_layout=spec.layout.state_layout,
    )
    inputs.load_step(spec, 0)
    A_log, dt_bias = _param_values(spec)
    _store(inputs.A_log, A_log)
    _store(inputs.dt_bias, dt_bias)
    indices = slot_indices(spec)
    _store(inputs.state_indices, torch.tensor(indices, dtype=torch.int64))
    _fill_state(buffers["state"], spec, indices)
    inputs.poison_out()
    return inputs


# --- overrides -------------------------------------------------------------------

OVERRIDE_KEYS: dict[str, str] = {
    "state_layout": "string passed as the state_layout keyword, whatever it is",
    "out_dtype": "bf16/fp16/fp32: out becomes a new dense [B, HV, V] tensor of that dtype",
    "out_shape": "list of ints: out becomes a new dense tensor of that shape",
    "out_alias": "'state' or 'mixed_qkv': out becomes a view overlapping that tensor's memory",
    "index_dtype": "dtype name (e.g. int16, fp32): state_indices converted to it",
    "qkv_last_stride": "int >= 1: mixed_qkv rebuilt with that stride on its last dim",
    "a_rows": "int: a rebuilt with that many rows (copied rows, zeros beyond)",
    "A_log_stride": "int >= 1: A_log becomes a non-dense view with that stride",
    "qkv_width_delta": "int: mixed_qkv narrower (<0) or wider (>0) by that many columns",
    "state_ndim": "int >= 1: state viewed with that many dims (merged or leading 1s)",
    "a_device": "device string (e.g. 'meta'): a moved to that device",
}


def _dtype(name: object) -> torch.dtype:
    return dtype_row(name).torch  # type: ignore[arg-type]


def _positive(key: str, value: object) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"override {key} must be an int >= 1, got {value!r}")
    return value


def _new_dense(inp: CaseInputs, name: str, dtype: torch.dtype, size: tuple[int, ...]):
    """A fresh guarded dense buffer for argument ``name``, zero-filled."""
    lay, ref = _dense(name, dtype, size)
    buf = _allocate(lay, inp.device)
    _materialize(buf, ref).zero_()
    return buf, ref


def _copy_overlap(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy the common leading block of two same-rank tensors."""
    if src.device.type == "meta" or dst.dim() != src.dim():
        return
    block = tuple(slice(0, min(x, y)) for x, y in zip(dst.shape, src.shape, strict=True))
    dst[block].copy_(src[block])


def _ov_state_layout(inp: CaseInputs, value: object) -> None:
    inp.state_layout = str(value)


def _ov_out_dtype(inp: CaseInputs, value: object) -> None:
    buf, ref = _new_dense(inp, "out", _dtype(value), tuple(inp.out.shape))
    inp.set_view("out", buf, ref)
    inp.poison_out()


def _ov_out_shape(inp: CaseInputs, value: object) -> None:
    size = tuple(int(x) for x in value)  # type: ignore[union-attr]
    buf, ref = _new_dense(inp, "out", inp.out.dtype, size)
    inp.set_view("out", buf, ref)
    inp.poison_out()


def _ov_out_alias(inp: CaseInputs, value: object) -> None:
    target = inp.refs.get(str(value)) if value in ("state", "mixed_qkv") else None
    if target is None:
        raise ValueError(f"out_alias must be 'state' or 'mixed_qkv' (a buffer view), got {value!r}")
    dtype, size = inp.out.dtype, tuple(inp.out.shape)
    start = target.offset * target.dtype.itemsize
    if start % dtype.itemsize:
        raise ValueError(f"out_alias={value}: offset not aligned for {dtype}")
    ref = ViewRef(target.buffer, dtype, size, _dense_strides(size), start // dtype.itemsize)
    flat = inp.buffers[target.buffer].flat
    if (ref.offset + math.prod(size)) * dtype.itemsize > flat.numel() * flat.element_size():
        raise ValueError(f"out_alias={value}: {value} is too small to hold out")
    inp.set_view("out", None, ref)


def _ov_index_dtype(inp: CaseInputs, value: object) -> None:
    dtype = _dtype(value)
    buf, ref = _new_dense(inp, "state_indices", dtype, tuple(inp.state_indices.shape))
    _materialize(buf, ref).copy_(inp.state_indices.to(dtype))
    inp.set_view("state_indices", buf, ref)


def _ov_qkv_last_stride(inp: CaseInputs, value: object) -> None:
    step, old = _positive("qkv_last_stride", value), inp.mixed_qkv
    B, D = old.shape
    width = max(1, (D - 1) * step + 1)
    lay = BufferLayout("mixed_qkv", old.dtype, B, width)
    buf, ref = _allocate(lay, old.device), lay.ref((B, D), (width, step))
    _materialize(buf, ref).copy_(old)
    inp.set_view("mixed_qkv", buf, ref)


def _ov_a_rows(inp: CaseInputs, value: object) -> None:
    rows = int(value)  # type: ignore[call-overload]
    buf, ref = _new_dense(inp, "a", inp.a.dtype, (rows, inp.a.shape[1]))
    _copy_overlap(_materialize(buf, ref), inp.a)
    inp.set_view("a", buf, ref)


def _ov_A_log_stride(inp: CaseInputs, value: object) -> None:
    step, old = _positive("A_log_stride", value), inp.A_log
    HV = old.shape[0]
    lay = BufferLayout("A_log", old.dtype, 1, max(1, (HV - 1) * step + 1))
    buf, ref = _allocate(lay, old.device), lay.ref((HV,), (step,))
    _materialize(buf, ref).copy_(old)
    inp.set_view("A_log", buf, ref)


def _ov_qkv_width_delta(inp: CaseInputs, value: object) -> None:
    B, D = inp.mixed_qkv.shape
    width = D + int(value)  # type: ignore[call-overload]
    if width < 0:
        raise ValueError(f"qkv_width_delta={value} makes mixed_qkv narrower than 0 columns")
    buf, ref = _new_dense(inp, "mixed_qkv", inp.mixed_qkv.dtype, (B, width))
    _copy_overlap(_materialize(buf, ref), inp.mixed_qkv)
    inp.set_view("mixed_qkv", buf, ref)


def _ov_state_ndim(inp: CaseInputs, value: object) -> None:
    ndim, ref = _positive("state_ndim", value), inp.refs["state"]
    if ref is None or len(ref.size) != 4:
        raise ValueError("state_ndim applies to the built 4-dim state view only")
    (N, HV, d2, d3), slot = ref.size, ref.stride[0]
    shapes = {
        1: ((N * slot,), (1,)),
        2: ((N, HV * d2 * d3), (slot, 1)),
        3: ((N, HV, d2 * d3), (slot, d2 * d3, 1)),
        4: (ref.size, ref.stride),
    }
    lead = max(0, ndim - 4)
    size, stride = shapes[min(ndim, 4)]
    size, stride = (1,) * lead + size, (N * slot,) * lead + stride
    inp.set_view("state", None, ViewRef(ref.buffer, ref.dtype, size, stride, ref.offset))


def _ov_a_device(inp: CaseInputs, value: object) -> None:
    inp.set_loose("a", inp.a.to(str(value)))


_OVERRIDES = {
    "state_layout": _ov_state_layout,
    "out_dtype": _ov_out_dtype,
    "out_shape": _ov_out_shape,
    "out_alias": _ov_out_alias,
    "index_dtype": _ov_index_dtype,
    "qkv_last_stride": _ov_qkv_last_stride,
    "a_rows": _ov_a_rows,
    "A_log_stride": _ov_A_log_stride,
    "qkv_width_delta": _ov_qkv_width_delta,
    "state_ndim": _ov_state_ndim,
    "a_device": _ov_a_device,
}
assert set(_OVERRIDES) == set(OVERRIDE_KEYS)


def apply_overrides(
    inputs: CaseInputs, overrides: Mapping[str, object] | Iterable[tuple[str, object]]
) -> CaseInputs:
    """Raw argument changes for error cases (``CaseSpec.overrides``), applied in
    order to a clone of ``inputs`` (which is left as it was). Keys are listed
    in :data:`OVERRIDE_KEYS`; an unknown key raises ValueError."""
    items = list(overrides.items() if isinstance(overrides, Mapping) else overrides)
    for key, _ in items:
        if key not in _OVERRIDES:
            raise ValueError(f"unknown override {key!r}; known: {', '.join(OVERRIDE_KEYS)}")
    result = inputs.clone()
    for key, value in items:
        _OVERRIDES[key](result, value)
    return result
