"""Stage 2: the inputs of one case, built deterministically inside guarded buffers."""
