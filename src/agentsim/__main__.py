"""``python -m agentsim``: the same as the ``agentsim`` command."""

from agentsim.cli import main

main()
