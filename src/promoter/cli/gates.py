"""`promoter gates`: gate definitions themselves, judged before anyone enforces them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from promoter.cli.app import EXIT_FAILED, SpecArg, WorkdirOpt, app, err, load_spec, out
from promoter.cli.pipeline import VERDICT_COLOURS

if TYPE_CHECKING:
    from promoter.pipelines.replay import Replayed, Tally
    from promoter.promotion.gates import GateResult

PANEL = "Gates"

gates = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(
    gates,
    name="gates",
    rich_help_panel=PANEL,
    help="Gate definitions: judge a new one on past promotions' evidence before enforcing it.",
)


def _since(value: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or datetime (UTC when it names no offset)."""
    try:
        if "T" not in value and " " not in value.strip():
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or datetime (2026-11-01, 2026-11-01T09:30, "
            "2026-11-01T09:30:00+01:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


SinceOpt = Annotated[
    datetime | None,
    typer.Option(
        parser=_since,
        metavar="DATE",
        help="Only reports of evaluations started at or after this ISO 8601 date or datetime (UTC "
        "unless it names an offset). Default: every report.",
        show_default=False,
    ),
]


@gates.command("replay")
def replay(
    spec: SpecArg,
    since: SinceOpt = None,
    workdir: WorkdirOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per report, instead of a table.")
    ] = False,
) -> None:
    """Judge SPEC's gates on the evidence of every past gate report of its model, newest first, and
    say what they would have blocked. Nothing is retrained, enforced or changed.

    Exits 0 whatever the gates would have decided, and for a model with no gate reports yet: this is a
    report. Exits 2 for a bad spec or --since, and 1 when the MLflow store cannot be read.
    """
    promotion = load_spec(spec)  # first: a refused spec costs no MLflow import

    from promoter.pipelines.replay import ReplayError, Tally, replay_gates
    from promoter.pipelines.tracking import tracking_uri, workdir_path

    model, root = promotion.spec.model, workdir_path(workdir)
    with err.status(f"reading the gate reports of {model}") as status:
        try:
            replayed = replay_gates(
                promotion.spec.gates,
                model,
                root,
                since,
                on_progress=lambda done, total: status.update(f"re-judging gate report {done}/{total}"),
            )
        except ReplayError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in replayed], indent=2) + "\n")
    if not replayed:
        when = f" since {_when(since)}" if since else ""
        (err if as_json else out).print(
            f"no gate reports of {model}{when} at {tracking_uri(root)}: nothing to replay",
            highlight=False,
            markup=False,
        )
        return
    if as_json:
        return
    _print_replay(replayed, spec.name, model)
    out.print(_summary(Tally.of(replayed), since or min(r.started for r in replayed)), highlight=False)


def _print_replay(replayed: list[Replayed], spec: str, model: str) -> None:
    table = Table(title=f"the gates of {spec}, replayed on past gate reports of {model}")
    for column in ("started", "promotion", "run", "champion", "was", "would be", "what changed"):
        table.add_column(column)
    for entry in replayed:
        table.add_row(
            entry.started.strftime("%Y-%m-%d %H:%M"),
            Text(entry.promotion or "-"),
            Text(entry.run_id[:12]),
            Text(f"v{entry.champion_version}" if entry.champion_version else "none"),
            _decision(entry.then),
            _decision(entry.now) if entry.error is None else Text("unreadable", style="red"),
            _what_changed(entry),
        )
    out.print(table)


def _decision(decision: str | None) -> Text:
    return Text("?") if decision is None else Text(decision, style=VERDICT_COLOURS[decision])


def _what_changed(entry: Replayed) -> Text:
    """One line per gate judged differently (`paired.recall[3] inconclusive -0.237 (new)`), then the
    blocking gates the new definition dropped, then how many gates the report lacked now pass (in
    full in --json). Plain Text: `[batch32]` in a gate's name is never read as markup."""
    if entry.error is not None:
        return Text(entry.error, style="red")
    shown = [change for change in entry.changed if change.was is not None or change.gate.verdict != "pass"]
    lines = [_change(change.gate, change.was) for change in shown]
    lines += [
        Text(f"{gate.name} dropped (was {gate.verdict})")
        for gate in entry.dropped
        if gate.enforced and gate.verdict in ("fail", "inconclusive")
    ]
    if passing := len(entry.changed) - len(shown):
        lines.append(Text(f"{passing} new gate{'' if passing == 1 else 's'} pass", style="dim"))
    return Text("\n").join(lines) if lines else Text("-", style="dim")


def _change(gate: GateResult, was: GateResult | None) -> Text:
    line = Text(f"{gate.name} ")
    line.append(gate.verdict, style=VERDICT_COLOURS[gate.verdict])
    if gate.actual is not None:
        line.append(f" {gate.actual:.3g}")
    if not gate.enforced:
        line.append(" advisory", style="dim")
    if was is None:
        line.append(" (new)", style="dim")
    elif was.verdict != gate.verdict:
        line.append(f" (was {was.verdict})", style="dim")
    else:
        line.append(f" (was {'enforced' if was.enforced else 'advisory'})", style="dim")
    return line


def _when(moment: datetime) -> str:
    at = moment.astimezone(UTC)
    return at.date().isoformat() if at.time() == time() else at.strftime("%Y-%m-%d %H:%M UTC")


def _summary(tally: Tally, since: datetime) -> str:
    """`12 gate reports since 2026-11-01: 2 that passed would now be blocked (fail), ...`"""
    reports = f"{tally.reports} gate report{'' if tally.reports == 1 else 's'}"
    line = (
        f"{reports} since {_when(since)}: {tally.newly_blocked} that passed would now be blocked (fail), "
        f"{tally.newly_awaiting} would need approval (inconclusive), "
        f"{tally.newly_passing} that failed would now pass"
    )
    if tally.other_changes:
        line += f"; {tally.other_changes} other changed decisions"
    if tally.unreadable:
        line += f"; {tally.unreadable} could not be read"
    return line
