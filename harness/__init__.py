"""gdn-harness: differential correctness harness for the GDN packed decode kernel."""

from harness.impls.registry import available_impls, resolve_impl

__all__ = ["available_impls", "resolve_impl"]
