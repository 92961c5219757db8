"""``python -m frobs``: the command line (see ``frobs.cli``)."""

from .cli import main

main()
