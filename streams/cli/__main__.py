"""``python -m streams.cli``: the ``funnel`` command."""

from streams.cli import main

main()
