"""Fuzzing: draw cases with Hypothesis, shrink the first failure, save it as YAML."""
