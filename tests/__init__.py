"""The test suite; its helpers (``tests.oracles``, ``tests.linear_common``) are imported as
modules of this package."""
