"""Stage 2: the inputs of one case, built deterministically inside guarded buffers.

One module per concern: :mod:`.slots` (which slot each row names),
:mod:`.buffers` (``guard | data | guard`` storage, views, guard checks),
:mod:`.layout` (where each argument lives), :mod:`.values` (seeded draws),
:mod:`.build` (:class:`CaseInputs` and :func:`build_inputs`) and
:mod:`.overrides` (the argument breakers of error cases).
"""

from harness.inputs.buffers import BufferLayout, GuardedBuffer, ViewRef, bits, buffer_violations
from harness.inputs.build import ARG_NAMES, INPUT_NAMES, CaseInputs, build_inputs
from harness.inputs.layout import estimate_bytes
from harness.inputs.overrides import OVERRIDE_KEYS, apply_overrides
from harness.inputs.slots import for_null_slot, slot_indices

__all__ = [
    "ARG_NAMES",
    "INPUT_NAMES",
    "OVERRIDE_KEYS",
    "BufferLayout",
    "CaseInputs",
    "GuardedBuffer",
    "ViewRef",
    "apply_overrides",
    "bits",
    "buffer_violations",
    "build_inputs",
    "estimate_bytes",
    "for_null_slot",
    "slot_indices",
]
