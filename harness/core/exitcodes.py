"""Exit codes of every ``gdn-harness`` command, documented in the README.

0: everything selected ran and nothing was violated. 1: a case failed or
crashed. 2: bad usage or bad case files.
"""

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
