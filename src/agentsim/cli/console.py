"""Terminal output shared by the command-line modules: the two consoles and the one way to fail.

Results go to stdout, messages and progress to stderr; a failure prints ``error: <message>`` (the message
escaped, so brackets in a YAML error are not read as markup) and exits with code 2 (bad input) by default.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

out_console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (no traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
