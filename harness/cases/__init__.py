"""Stage 1: YAML case files to validated ``CaseSpec`` objects.

The only stage that reads YAML; every mistake in a file becomes a
``CaseFileError`` naming the file, the case, the field and the line.
"""
