"""Adapters that map the decode contract onto outside kernels.

Each module here wraps one outside package behind the contract's signature
(docs/design.md) and imports that package only when the module itself is
imported, so the harness works without any of them installed. The registry
names them (``gdn-harness impls`` lists them); an adapter whose package is
missing fails to load with the reason and the install command.
"""
