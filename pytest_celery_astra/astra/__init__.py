"""Astra DB: the settings checked before any test runs, the secure connect bundle, and tables shared by a run's xdist workers."""
