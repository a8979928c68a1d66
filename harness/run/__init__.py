"""Stage 5: running one case. Every implementation on its own copy of the
inputs, every check, in process, crash-isolated or under memcheck.
"""
