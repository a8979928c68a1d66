"""Hypothesis runs the harness's own tests under the bounded, derandomized ``ci`` profile."""

from harness.fuzz.profiles import load_profile

load_profile("ci")
