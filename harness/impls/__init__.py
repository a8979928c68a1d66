"""Stage 3: implementations of the decode contract, found by name.

Built-ins (packed, baseline, oracle), adapters for outside kernels, entry
points and ``module:function`` or ``file.py:function`` strings.
"""
