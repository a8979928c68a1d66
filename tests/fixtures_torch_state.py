"""Correct implementations that change torch's process-wide state after computing.

Each computes with the oracle, then leaves one piece of global state changed;
the runner must report that as a violation of the case and undo it.
"""

import torch

from harness.impls.oracle import oracle_decode


def default_dtype_f64(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.set_default_dtype(torch.float64)


def grad_off(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.set_grad_enabled(False)


def one_thread(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.set_num_threads(1 if torch.get_num_threads() != 1 else 2)


def draws_random(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.rand(4)


def reseeds(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.manual_seed(1234)


def deterministic_on(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.use_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled())


def default_device_meta(*args, **kwargs) -> None:
    oracle_decode(*args, **kwargs)
    torch.set_default_device("meta")


def raises_after_f64(*args, **kwargs) -> None:
    """Changes the default dtype, then fails: the change is undone all the same."""
    torch.set_default_dtype(torch.float64)
    raise RuntimeError("boom")
