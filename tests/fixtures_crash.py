"""Implementations that kill or hang their process, for crash-isolation tests."""

import os
import time


def die(*args, **kwargs) -> None:
    os._exit(77)


def hang(*args, **kwargs) -> None:
    time.sleep(3600)
