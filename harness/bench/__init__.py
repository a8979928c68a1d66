"""``gdn-harness bench``: how fast each implementation is, measured honestly."""
