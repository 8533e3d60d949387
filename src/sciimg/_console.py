"""Where the command line writes: results to stdout, errors to stderr."""

from __future__ import annotations

import typer
from rich.console import Console

# Lines are never folded: paths stay whole and a message stays one line, in a
# terminal or a log file alike (tables still fit the width).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` as ``error:`` lines on stderr and exit with ``code``."""
    from rich.text import Text

    for line in str(message).splitlines():
        # The message as it is: brackets in it (a path, an extra such as
        # 'sciimg[gpu]') are not markup.
        text = Text.assemble(("error:", "red"), " ", line)
        err.print(text, highlight=False, soft_wrap=True)
    raise typer.Exit(code)
