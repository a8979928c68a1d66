"""Stand-in for SGLang (tests only): the module path and signature of its packed GDN decode op."""

__version__ = "0.5.23"
