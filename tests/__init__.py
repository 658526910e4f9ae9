"""The test suite, a package so that its helpers (tests/helpers/) import as ``tests.helpers.<module>``."""
