"""A whole promotion on this machine (the embedded default): run, approve, rollback, status, history,
down."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from promoter.cli.app import (
    EXIT_AWAITING,
    EXIT_FAILED,
    EXIT_REJECTED,
    SpecArg,
    WorkdirOpt,
    app,
    check_spec,
    err,
    load_spec,
    out,
    refuse,
)
from promoter.promotion.spec import ModelPromotion, SpecError

if TYPE_CHECKING:
    from promoter.local.rollout import Process
    from promoter.promotion.status import PromotionStatus

PANEL = "Promotions on this machine"


ServeArgsOpt = Annotated[
    str,
    typer.Option(help="Extra `promoter serve` flags for the servers this starts, e.g. '--workers 2'."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the status as JSON on stdout.")]
_EXIT_BY_PHASE = {
    "Promoted": 0,
    "RolledBack": 0,
    "Rejected": EXIT_REJECTED,
    "AwaitingApproval": EXIT_AWAITING,
}


def _drive(
    promotion: ModelPromotion, workdir: Path, serve_args: str, as_json: bool, request: str = ""
) -> None:
    """Claim the promotion, apply a human request (approve/rollback), drive it and report."""
    import logging
    import shlex
    import time

    from mlflow.exceptions import MlflowException

    from promoter.local.platform import local_actor, local_platform
    from promoter.local.rollout import RolloutError
    from promoter.local.store import PromotionBusy, claim
    from promoter.promotion.driver import drive
    from promoter.promotion.status import Transition

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # our own lines say what happens
    platform = local_platform(workdir, tuple(shlex.split(serve_args)))
    started = time.monotonic()
    try:
        with claim(workdir, promotion) as store:
            if request:
                status = store.load()
                setattr(status, request, local_actor())
                store.save(status)

            def show(transition: Transition) -> None:
                store.record(transition)
                elapsed = time.monotonic() - started
                err.print(
                    f"[dim]{elapsed:7.1f}s[/dim]  [bold]{transition.phase:<16}[/bold] "
                    f"{transition.reason}: {transition.message}",
                    highlight=False,
                )

            with err.status(f"{promotion.metadata.name}: working", spinner="dots"):
                status = drive(promotion, store, platform.backends, on_transition=show)
    except SpecError as exc:
        refuse(str(exc))
    except (PromotionBusy, RolloutError, MlflowException, OSError) as exc:
        err.print(
            f"[red]error:[/red] {exc}\nthe status is saved: run the same command again to resume",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        sys.stdout.write(status.to_json())
    else:
        _print_summary(
            promotion,
            status,
            platform.rollouts.describe(promotion.spec.rollout.name).proxy if promotion.spec.rollout else None,
        )
    raise typer.Exit(_EXIT_BY_PHASE.get(status.phase, EXIT_FAILED))


def _print_summary(promotion: ModelPromotion, status: PromotionStatus, proxy: Process | None) -> None:
    table = Table(title=f"{promotion.metadata.name}: {status.phase}")
    table.add_column("phase")
    table.add_column("wall time", justify="right")
    for phase, seconds in status.phase_seconds():
        table.add_row(phase, f"{seconds:.1f}s")
    out.print(table)
    colour = {"Promoted": "green", "RolledBack": "green", "Rejected": "yellow"}.get(status.phase, "red")
    out.print(f"[{colour}]{status.phase}[/]: {status.message}", highlight=False)
    if status.load_test is not None:
        lt = status.load_test
        out.print(
            f"load test: {lt.requests} requests, {lt.rps:.0f} rps, p50 {lt.p50_ms:.0f} ms, "
            f"p95 {lt.p95_ms:.0f} ms, p99 {lt.p99_ms:.0f} ms, errors {lt.error_rate:.4f}",
            highlight=False,
        )
    if proxy is not None:
        out.print(
            f"active address: {proxy.address}  (stop the local servers: promoter down)", highlight=False
        )
    elif promotion.spec.rollout is not None and status.phase in ("Promoted", "RolledBack"):
        out.print(
            f"{promotion.spec.rollout.name} is not serving (stopped by promoter down): "
            f"promoter up {promotion.spec.model}",
            highlight=False,
        )


@app.command(rich_help_panel=PANEL)
def run(
    spec: SpecArg, workdir: WorkdirOpt = None, serve_args: ServeArgsOpt = "", as_json: JsonOpt = False
) -> None:
    """Run a whole promotion on this machine: train, evaluate, gate, register, deploy a preview,
    load-test it, promote. Re-running the same promotion resumes it where it stopped.

    Exits 0 promoted, 3 rejected by a gate, 1 failed, 4 waiting for `promoter approve`.
    """
    promotion = load_spec(spec, check=False)  # first: a spec that does not parse costs no import

    from promoter.local.store import started
    from promoter.pipelines.tracking import resolve_workdir, workdir_path

    # Checked before it is claimed, so a refused spec leaves nothing behind and its name stays free;
    # a promotion resumed under the same name was checked when it started.
    if not started(workdir_path(workdir), promotion):
        check_spec(promotion, str(spec))
    _drive(promotion, resolve_workdir(workdir), serve_args, as_json)


def _stored(workdir: Path, name: str) -> ModelPromotion:
    from promoter.local.store import SPEC_FILE, promotions_dir

    path = promotions_dir(workdir) / name / SPEC_FILE
    if not path.exists():
        refuse(f"no promotion {name!r} in {workdir}")
    return load_spec(path, check=False)  # checked when it started


@app.command(rich_help_panel=PANEL)
def approve(
    name: Annotated[str, typer.Argument(help="The promotion's metadata.name.")],
    workdir: WorkdirOpt = None,
    serve_args: ServeArgsOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Approve a promotion waiting in AwaitingApproval, and finish it."""
    from promoter.local.store import LocalStatusStore, promotions_dir
    from promoter.pipelines.tracking import resolve_workdir

    root = resolve_workdir(workdir)
    promotion = _stored(root, name)
    phase = LocalStatusStore(promotions_dir(root) / name).load().phase
    if phase != "AwaitingApproval":
        refuse(f"{name} is {phase}, not AwaitingApproval")
    _drive(promotion, root, serve_args, as_json, request="approved_by")


@app.command(rich_help_panel=PANEL)
def rollback(
    model: Annotated[str, typer.Argument(help="The registered model whose champion to roll back.")],
    workdir: WorkdirOpt = None,
    serve_args: ServeArgsOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Put the previous champion back, in one step: it is already registered, validated and kept hot."""
    from promoter.local.platform import local_platform
    from promoter.local.store import stored_promotions
    from promoter.pipelines.tracking import resolve_workdir

    root = resolve_workdir(workdir)
    champion = local_platform(root).registry.champion(model)
    if champion is None:
        refuse(f"{model!r} has no @champion in {root}: nothing to roll back")
    current = [
        (promotion, state)
        for promotion, state in stored_promotions(root)
        if promotion.spec.model == model and state.phase == "Promoted" and state.model_version == champion
    ]
    if not current:
        refuse(f"the @champion of {model!r} (version {champion}) was not put there by a promotion in {root}")
    promotion, state = current[-1]
    previous = state.previous_champion
    if previous is None:
        refuse(f"{promotion.metadata.name} made the first champion of {model!r}: nothing to roll back to")
    err.print(f"rolling back {model}: version {champion} -> {previous} ({promotion.metadata.name})")
    _drive(promotion, root, serve_args, as_json, request="rollback_requested_by")


@app.command(rich_help_panel=PANEL)
def status(
    name: Annotated[str | None, typer.Argument(help="One promotion; all of them when left out.")] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the promotions of this workdir, or one promotion's history, gates and load test."""
    import json

    from promoter.local.store import stored_promotions
    from promoter.pipelines.tracking import resolve_workdir

    found = stored_promotions(resolve_workdir(workdir))
    if name is not None:
        found = [(p, s) for p, s in found if p.metadata.name == name]
        if not found:
            refuse(f"no promotion {name!r}")
    if as_json:
        documents = [
            {
                "metadata": {"name": p.metadata.name},
                "spec": p.to_manifest()["spec"],
                "status": s.to_document(),
            }
            for p, s in found
        ]
        sys.stdout.write(json.dumps(documents if name is None else documents[0], indent=2) + "\n")
        return
    if name is None:
        table = Table(title="promotions")
        for column in ("name", "model", "phase", "version", "previous champion", "reason"):
            table.add_column(column)
        for promotion, state in found:
            table.add_row(
                promotion.metadata.name,
                promotion.spec.model,
                state.phase,
                state.model_version or "-",
                state.previous_champion or "-",
                state.reason,
            )
        out.print(table)
        return
    promotion, state = found[0]
    history = Table(title=f"{promotion.metadata.name}: {state.phase}")
    for column in ("at", "phase", "reason", "message"):
        history.add_column(column)
    for entry in state.history:
        history.add_row(entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.phase, entry.reason, entry.message)
    out.print(history)
    for gate in [*(state.gates.failures if state.gates else []), *state.load_test_gates]:
        out.print(
            f"  {gate.name}: {gate.actual} {gate.comparison} {gate.threshold}: {gate.verdict}",
            highlight=False,
        )


@app.command(rich_help_panel=PANEL)
def history(
    model: Annotated[str, typer.Argument(help="A registered model.")],
    at: Annotated[
        datetime | None,
        typer.Option(help="Which version was @champion at this time (ISO 8601, UTC if naive)."),
    ] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Every move of the model's aliases: who, when, why, from which version."""
    from datetime import UTC

    from promoter.local.platform import local_platform
    from promoter.pipelines.tracking import resolve_workdir

    root = resolve_workdir(workdir)
    registry = local_platform(root).registry
    if not registry.exists(model):
        refuse(f"no registered model {model!r} in {root}")
    if at is not None:
        when = at if at.tzinfo else at.replace(tzinfo=UTC)
        move = registry.champion_at(model, when)
        if move is None:
            out.print(f"{model} had no @champion at {when.isoformat()}")
        else:
            out.print(
                f"{model}@champion at {when.isoformat()}: version {move.to_version}, "
                f"put there by {move.by} at {move.at.isoformat()} ({move.why})",
                highlight=False,
            )
        return
    table = Table(title=f"alias moves of {model}")
    for column in ("at", "alias", "from", "to", "by", "why"):
        table.add_column(column)
    for move in registry.alias_history(model):
        table.add_row(
            move.at.strftime("%Y-%m-%d %H:%M:%S"),
            move.alias,
            move.from_version or "-",
            move.to_version,
            move.by,
            move.why,
        )
    out.print(table)


@app.command(rich_help_panel=PANEL)
def up(
    model: Annotated[
        str | None, typer.Argument(help="One registered model; all of them when left out.")
    ] = None,
    workdir: WorkdirOpt = None,
    serve_args: ServeArgsOpt = "",
) -> None:
    """Serve again what `promoter down` stopped: each rollout's @champion behind its active address (the
    same one as before), with the @previous-champion hot for a rollback. Running servers are kept."""
    import shlex

    from promoter.local.platform import local_platform
    from promoter.local.rollout import RolloutError
    from promoter.pipelines.tracking import resolve_workdir

    root = resolve_workdir(workdir)
    platform = local_platform(root, tuple(shlex.split(serve_args)))
    rollouts = [
        (name, state.model)
        for name in platform.rollouts.rollouts()
        if (state := platform.rollouts.describe(name)).model and model in (None, state.model)
    ]
    if not rollouts:
        refuse(f"no rollout {f'of {model!r} ' if model else ''}in {root}: `promoter run` deploys one")
    for name, served in rollouts:
        champion = platform.registry.champion(served)
        if champion is None:
            err.print(f"{name}: {served} has no @champion: nothing to serve", highlight=False)
            continue
        previous = platform.registry.previous_champion(served)
        hot = f", version {previous} hot for a rollback" if previous not in (None, champion) else ""
        err.print(f"{name}: starting {served} version {champion}{hot}", highlight=False)
        try:
            proxy = platform.rollouts.up(name, served, champion, previous)
        except RolloutError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
        out.print(f"{name}: {served} version {champion} at {proxy.address}", highlight=False)


@app.command(rich_help_panel=PANEL)
def down(workdir: WorkdirOpt = None) -> None:
    """Stop the local servers and active proxies that `promoter run` left serving."""
    from promoter.local.rollout import LocalRollouts
    from promoter.pipelines.tracking import resolve_workdir, tracking_uri

    root = resolve_workdir(workdir)
    rollouts = LocalRollouts(root, tracking_uri(root))
    for name in rollouts.rollouts():
        rollouts.down(name)
        err.print(f"stopped rollout {name} (`promoter up` serves its champion again)", highlight=False)
