"""``python -m agentsim``: the same as the ``agentsim`` command."""

from agentsim.cli import main

if __name__ == "__main__":
    main()
