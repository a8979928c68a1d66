"""Process-wide torch state that an implementation must leave as it found it.

Every case of a run shares one process, so an implementation that calls
``torch.set_default_dtype(torch.float64)``, turns grad mode off, changes the
number of threads, draws from (or reseeds) the global generator, or flips
the deterministic-algorithms flag changes the conditions of every later
case. :func:`guarded` snapshots that state around one call of an
implementation, reports each change in a sentence, and puts the state back,
so the change is a violation of the case that made it and of no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TorchState:
    """The process-wide settings and generator states a call may not change."""

    default_dtype: torch.dtype
    default_device: torch.device
    grad_enabled: bool
    num_threads: int
    deterministic: bool
    deterministic_warn_only: bool
    cpu_rng: torch.Tensor
    cuda_rng: tuple[torch.Tensor, ...]  # one per device, when CUDA is initialised


def capture(cuda: bool = False) -> TorchState:
    """The state now; the CUDA generators only with ``cuda`` and once CUDA is up."""
    cuda_rng = ()
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_rng = tuple(torch.cuda.get_rng_state_all())
    return TorchState(
        default_dtype=torch.get_default_dtype(),
        default_device=torch.get_default_device(),
        grad_enabled=torch.is_grad_enabled(),
        num_threads=torch.get_num_threads(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cpu_rng=torch.get_rng_state(),
        cuda_rng=cuda_rng,
    )


_SETTINGS = (
    ("default_dtype", "the default dtype"),
    ("default_device", "the default device"),
    ("grad_enabled", "grad mode (enabled)"),
    ("num_threads", "the number of threads"),
    ("deterministic", "the deterministic-algorithms flag"),
    ("deterministic_warn_only", "the deterministic-algorithms warn-only flag"),
)


def changes(before: TorchState, after: TorchState) -> list[str]:
    """One sentence per setting or generator that differs."""
    found = [
        f"changed {what} from {getattr(before, name)} to {getattr(after, name)}"
        for name, what in _SETTINGS
        if getattr(before, name) != getattr(after, name)
    ]
    if not torch.equal(before.cpu_rng, after.cpu_rng):
        found.append("used or reseeded torch's global CPU random generator")
    if len(before.cuda_rng) == len(after.cuda_rng) and any(
        not torch.equal(x, y) for x, y in zip(before.cuda_rng, after.cuda_rng, strict=True)
    ):
        found.append("used or reseeded torch's global CUDA random generators")
    return found


def restore(state: TorchState) -> None:
    """Put every setting and generator of ``state`` back."""
    torch.set_default_dtype(state.default_dtype)
    if torch.get_default_device() != state.default_device:
        cpu = state.default_device.type == "cpu"  # cpu: no device context at all
        torch.set_default_device(None if cpu else state.default_device)
    torch.set_grad_enabled(state.grad_enabled)
    if torch.get_num_threads() != state.num_threads:
        torch.set_num_threads(state.num_threads)
    torch.use_deterministic_algorithms(state.deterministic, warn_only=state.deterministic_warn_only)
    torch.set_rng_state(state.cpu_rng)
    if state.cuda_rng:
        torch.cuda.set_rng_state_all(state.cuda_rng)


@contextmanager
def guarded(report: Callable[[str], None], cuda: bool = False) -> Iterator[None]:
    """Run the body, then ``report`` each change it made and undo them all,
    also when the body raises."""
    before = capture(cuda)
    try:
        yield
    finally:
        after = capture(cuda)
        found = changes(before, after)
        if found:
            for sentence in found:
                report(f"{sentence} (restored before the next call)")
            restore(before)
