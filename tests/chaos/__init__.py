"""Chaos runs against the real worker: kills, several workers, a PostgreSQL outage and hostile
input, checked against the backtest's replay (``harness``); ``python -m tests.chaos``."""
