"""The `promoter` Typer application and what every command shares: exit codes, consoles, options.

Exit codes, shared by every command that decides: 0 success or promoted, 3 rejected by a gate,
1 failed (something broke), 2 bad input (invalid spec or arguments), 4 waiting for an approval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from promoter import __version__
from promoter.promotion.spec import ModelPromotion, SpecError, load_promotion

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3
EXIT_AWAITING = 4

# Wide enough for any path, run id or table row: when piped, nothing is cut at a "terminal width".
UNWRAPPED_WIDTH = 10_000


class CopyableConsole(Console):
    """Wraps to the terminal it prints on; anywhere else (a pipe, a file, a CI log) it never wraps a line
    or truncates a table cell, so what it prints can be copied and pasted: a path or a run id split
    across lines, or a name cut to `digits-2026-1…`, cannot be."""

    @property
    def size(self) -> ConsoleDimensions:
        measured = super().size
        return measured if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, measured.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


app = typer.Typer(no_args_is_help=True, add_completion=False)
err = CopyableConsole(stderr=True, soft_wrap=True)
out = CopyableConsole(soft_wrap=True)

SpecArg = Annotated[Path, typer.Argument(help="A ModelPromotion YAML file.", show_default=False)]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Where local state lives (MLflow SQLite store, artifacts, reports). "
        "Default: $PROMOTER_WORKDIR or ./.promoter"
    ),
]


def refuse(message: str) -> NoReturn:
    """Bad input for a command: say why and exit 2, changing nothing."""
    # escaped: the message quotes the user's input, and '[/x]' in it must not be read as markup
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def load_own_secrets() -> None:
    """Log in to Vault as this process's own component (VAULT_* variables), hand the secrets to their
    clients, and say on stderr which keys came from where, as whom: never a value. Bad Vault
    variables are bad input (exit 2); a Vault that refuses or cannot be reached is a failure (1)."""
    from promoter.secrets import VaultError, load_process_secrets
    from promoter.settings import SettingsError

    try:
        store = load_process_secrets()
    except SettingsError as exc:
        refuse(str(exc))
    except VaultError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if store is not None:
        err.print(store.describe(), highlight=False, markup=False)


def load_spec(path: Path, *, check: bool = True) -> ModelPromotion:
    """The CLI's one way to read a spec. A file that cannot be read, is binary, is not YAML, is not a
    ModelPromotion or is refused by `promoter.validation` exits 2 with the file and each field
    named, before anything runs. `check=False` only for a promotion already started: it was checked
    then, and what it pinned (a revision, a data version) may since have moved on."""
    try:
        promotion = load_promotion(path)
    except SpecError as exc:
        refuse(str(exc))
    return check_spec(promotion, str(path)) if check else promotion


def check_spec(promotion: ModelPromotion, origin: str) -> ModelPromotion:
    """`promoter.validation` on a parsed spec; exit 2 naming each field it refuses."""
    from promoter.validation import validate_promotion  # imports torch: only for commands that need it

    try:
        return validate_promotion(promotion, origin=origin)
    except SpecError as exc:
        refuse(str(exc))


def _version(value: bool) -> None:
    if value:
        out.print(f"promoter {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Move ML models from training to production only when they have earned it."""
