"""Benchmarks that print figures (never asserted): ``make bench``. See ``__main__``."""
