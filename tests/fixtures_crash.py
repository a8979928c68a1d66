"""Implementations that kill, exit or hang their process, for crash-isolation tests."""

import ctypes
import os
import sys
import time

from harness.impls.oracle import oracle_decode

DOOMED_BATCH = 3  # ``*_at_b3`` implementations misbehave only on cases with B = 3


def die(*args, **kwargs) -> None:
    os._exit(77)


def hang(*args, **kwargs) -> None:
    time.sleep(3600)


def segfault(*args, **kwargs) -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def exit_call(*args, **kwargs) -> None:
    sys.exit(3)


def _doomed(mixed_qkv) -> bool:
    return mixed_qkv.shape[0] == DOOMED_BATCH


def die_at_b3(mixed_qkv, *args, **kwargs) -> None:
    """Correct, except that a B = 3 case ends the process."""
    if _doomed(mixed_qkv):
        os._exit(77)
    oracle_decode(mixed_qkv, *args, **kwargs)


def segfault_at_b3(mixed_qkv, *args, **kwargs) -> None:
    if _doomed(mixed_qkv):
        ctypes.string_at(0)
    oracle_decode(mixed_qkv, *args, **kwargs)


def exit_at_b3(mixed_qkv, *args, **kwargs) -> None:
    if _doomed(mixed_qkv):
        sys.exit(3)
    oracle_decode(mixed_qkv, *args, **kwargs)


def hang_at_b3(mixed_qkv, *args, **kwargs) -> None:
    if _doomed(mixed_qkv):
        time.sleep(3600)
    oracle_decode(mixed_qkv, *args, **kwargs)
