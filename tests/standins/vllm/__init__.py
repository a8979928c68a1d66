"""Stand-in for vLLM (tests only): the module paths and signatures of its GDN decode ops."""

__version__ = "0.34.0"
