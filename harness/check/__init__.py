"""Stage 4: the checks. Tolerances, error statistics and the per-element
check of a step against the float64 oracle, in this process or in workers.
"""
