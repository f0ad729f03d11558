"""Where the tool talks to the user: results on stdout, warnings and errors on stderr.

Markup and emoji codes are off: the tool prints user text (paths, names, `test:-1`) and
must print it literally. Styles are given as Text parts instead."""

import os
import sys

from rich.console import Console
from rich.text import Text

# Rich folds everything at 80 columns when stdout is no terminal (a pipe, a log file), so a
# table of runs would wrap inside its names. There, unless COLUMNS says otherwise, don't fold:
# a table is then as wide as its content (none of the tool's output fills the width).
PIPE_WIDTH = 1000
console = Console(markup=False, emoji=False,
                  width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False)
# A table with a column of prose (what a key means, what a config is for) wraps that column to
# stay readable, in a pipe too: it is at most this wide.
PROSE_WIDTH = 120


def print_prose_table(table) -> None:
    console.print(table, width=min(console.width, PROSE_WIDTH))


def warn(message: str) -> None:
    err_console.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)


def error(message: str) -> None:
    """One line on stderr, however long (soft_wrap: no folding at the terminal's width)."""
    err_console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)
