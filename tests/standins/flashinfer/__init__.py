"""Stand-in for FlashInfer (tests only): the module path and signature of its GDN decode op."""

__version__ = "0.7.4"
