"""The ``funnel`` command (click). Each module adds its commands to the one group:
``run`` (worker, up, collector, demo), ``traffic`` (publish, simulate), ``model`` (backtest,
explain, model check), ``learn``, ``tools`` (schema, dlq, costs, report)."""

from streams.cli import learn, model, run, tools, traffic  # noqa: F401  (they join the group)
from streams.cli.group import main

for command in (tools.schema, tools.dlq, tools.costs, tools.report):
    main.add_command(command)

__all__ = ["main"]
