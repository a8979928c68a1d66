"""The inputs of one case, assembled: eight arguments as views into guarded buffers.

``build_inputs`` lays the buffers out (:mod:`.layout`), fills every guard and
hole with the sentinel (:mod:`.buffers`), writes the drawn values
(:mod:`.values`) and the slots (:mod:`.slots`) into the views, and poisons
``out``. :class:`CaseInputs` is what implementations are called with and
what the checks read back: guard violations, changed inputs, the next step.
docs/design.md describes the contract these arguments follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from harness.core.layouts import VK
from harness.core.spec import CaseSpec
from harness.inputs.buffers import (
    GuardedBuffer,
    ViewRef,
    allocate,
    bits,
    buffer_violations,
    changed_flags,
    first_index,
    materialize,
)
from harness.inputs.layout import case_layout
from harness.inputs.slots import slot_indices
from harness.inputs.values import fill_state, gate_values, param_values, qkv_values, store

ARG_NAMES = ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state", "state_indices", "out")
INPUT_NAMES = ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state_indices")


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
    state_layout: str = VK
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
            tensors[name] = loose[name] if ref is None else materialize(buffers[ref.buffer], ref)
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
        bufs = list(self.buffers.values())
        changed = [b for b, flag in zip(bufs, changed_flags(bufs), strict=True) if flag]
        return [msg for buf in changed for msg in buffer_violations(buf)]

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Bit-exact copies of the read-only inputs, for :meth:`changed_inputs`."""
        tensors = ((n, getattr(self, n)) for n in INPUT_NAMES)
        return {n: t.clone() for n, t in tensors if t.device.type != "meta"}

    def changed_inputs(self, snapshot: Mapping[str, torch.Tensor]) -> list[str]:
        """Which inputs differ (bitwise) from ``snapshot``; they must not."""
        msgs, same_kind = [], {}
        for name, before in snapshot.items():
            now = getattr(self, name)
            if now.shape != before.shape or now.dtype != before.dtype:
                msgs.append(f"{name}: shape or dtype changed")
            else:
                same_kind[name] = (bits(now) != bits(before)).any()
        if not same_kind:
            return msgs
        flags = torch.stack(list(same_kind.values())).tolist()  # one synchronisation for all
        for name, flag in zip(same_kind, flags, strict=True):
            if not flag:
                continue
            now, before = getattr(self, name), snapshot[name]
            diff = bits(now) != bits(before)
            count = int(diff.sum().item())
            if count:
                msgs.append(
                    f"{name}: {count} of {now.numel()} elements changed "
                    f"(first at index {first_index(diff)})"
                )
        return msgs

    def load_step(self, spec: CaseSpec, step: int) -> None:
        """Write step ``step``'s activations (mixed_qkv, a, b) into the views in
        place; step 0 is what :func:`build_inputs` wrote. Parameters, indices and
        the state are left alone: the caller carries the state."""
        store(self.mixed_qkv, qkv_values(spec, step))
        a, b = gate_values(spec, step)
        store(self.a, a)
        store(self.b, b)

    def set_view(self, name: str, buf: GuardedBuffer | None, ref: ViewRef) -> None:
        """Point argument ``name`` at ``ref`` (adding ``buf`` if new); drop
        buffers no argument uses any more."""
        if buf is not None:
            self.buffers[buf.name] = buf
        self.refs[name] = ref
        setattr(self, name, materialize(self.buffers[ref.buffer], ref))
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
    layouts, refs = case_layout(spec)
    buffers = {lay.name: allocate(lay, device) for lay in layouts}
    inputs = CaseInputs.from_buffers(
        buffers,
        refs,
        {},
        scale=spec.effective_scale,
        use_qk_l2norm=spec.use_qk_l2norm,
        state_layout=spec.layout.state_layout,
    )
    inputs.load_step(spec, 0)
    A_log, dt_bias = param_values(spec)
    store(inputs.A_log, A_log)
    store(inputs.dt_bias, dt_bias)
    indices = slot_indices(spec)
    store(inputs.state_indices, torch.tensor(indices, dtype=torch.int64))
    fill_state(buffers["state"], spec, indices)
    inputs.poison_out()
    return inputs
