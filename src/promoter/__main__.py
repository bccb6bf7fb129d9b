"""`python -m promoter`: the CLI, for processes started without the console script on PATH."""

from promoter.cli import app

app()
