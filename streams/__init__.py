"""Wiring and I/O: the Faust app, Kafka topics, the PostgreSQL projection, the embedded stack, the CLI."""
