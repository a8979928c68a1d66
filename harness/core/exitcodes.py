"""Exit codes of every ``gdn-harness`` command, documented in the README.

0: everything selected ran and nothing was violated. 1: a case failed or
crashed. 2: bad usage or bad case files. 5: nothing was tested (every
selected case was skipped, or a tier asked for cannot run on this machine),
so that a job that lost its GPU is not green.
"""

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NO_TESTS = 5  # as pytest's "no tests ran": every case skipped, or a tier that cannot run
