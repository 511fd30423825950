"""Wiring and I/O: the Faust app, Kafka topics, the PostgreSQL projection, the embedded stack, the CLI."""

import funnel  # noqa: F401  (first: the compiled modules' finder, ``funnel.accel``)
