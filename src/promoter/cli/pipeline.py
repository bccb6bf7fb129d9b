"""Commands that work on one candidate: train, evaluate, reproduce, render its Workflow, list the
pipelines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from promoter.cli.app import (
    EXIT_AWAITING,
    EXIT_REJECTED,
    SpecArg,
    WorkdirOpt,
    app,
    err,
    load_spec,
    out,
    refuse,
)
from promoter.promotion.spec import SpecError

# How a gate's verdict reads in a table, wherever one is printed (evaluate, replay).
VERDICT_COLOURS = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "dim"}

if TYPE_CHECKING:
    from promoter.pipelines.reproduce import Reproduction
    from promoter.pipelines.training import EpochMetrics
    from promoter.promotion.gates import GateReport

PANEL = "One candidate"


@app.command(rich_help_panel=PANEL)
def train(spec: SpecArg, workdir: WorkdirOpt = None) -> None:
    """Train and log one candidate run; prints its MLflow run id (alone on the last line of stdout)."""
    promotion = load_spec(spec)  # first: a refused spec costs no MLflow import

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from promoter.lineage import LineageError
    from promoter.pipelines.data import DataError
    from promoter.pipelines.tracking import resolve_workdir
    from promoter.pipelines.train import train_candidate

    source = promotion.train
    epochs = int(source.params.get("epochs", 0)) or None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(f"train {source.pipeline}@{source.data.version}", total=epochs, status="")
        try:
            candidate = train_candidate(
                promotion,
                resolve_workdir(workdir),
                on_epoch=lambda m: progress.update(
                    task, completed=m.epoch, status=f"loss {m.train_loss:.4f}  val/acc {m.val_accuracy:.4f}"
                ),
            )
        except (SpecError, DataError, LineageError) as exc:
            refuse(str(exc))
    assert candidate.result is not None  # only resumed workflow steps reuse a finished run
    last = candidate.result.history[-1]
    err.print(
        f"trained [bold]{candidate.model_uri}[/bold] on {candidate.result.device}: "
        f"val/accuracy {last.val_accuracy:.4f}, {candidate.result.samples_per_second:,.0f} samples/s"
    )
    out.print(candidate.run_id, highlight=False)


@app.command(rich_help_panel=PANEL)
def evaluate(
    spec: SpecArg,
    run_id: Annotated[str, typer.Option("--run-id", help="The candidate's MLflow run id.")],
    report: Annotated[
        Path | None,
        typer.Option(help="Where to write the gate report JSON. Default: WORKDIR/gate-reports/RUN_ID.json"),
    ] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Evaluate the candidate and the current @champion on the held-out split and apply the gates.

    Exits 0 when every enforced gate passes, 3 when one fails, 4 when one is inconclusive (the
    candidate is not shown worse, nor within the margin: a person decides).
    """
    promotion = load_spec(spec)  # first: a refused spec costs no MLflow import

    from promoter.pipelines.data import DataError
    from promoter.pipelines.evaluate import evaluate_candidate
    from promoter.pipelines.scoring import EvaluationError
    from promoter.pipelines.tracking import resolve_workdir

    root = resolve_workdir(workdir)
    report_path = report or root / "gate-reports" / f"{run_id}.json"
    with err.status(f"evaluating run {run_id} and the @champion of {promotion.spec.model}"):
        try:
            evaluation = evaluate_candidate(promotion, run_id, root, report_path)
        except (SpecError, DataError, EvaluationError) as exc:
            refuse(str(exc))
    _print_gate_report(evaluation.report)
    out.print(f"gate report: {report_path}", highlight=False)
    if evaluation.report.decision == "fail":
        raise typer.Exit(EXIT_REJECTED)
    if evaluation.report.decision == "inconclusive":
        raise typer.Exit(EXIT_AWAITING)


def _print_gate_report(report: GateReport) -> None:
    champion = f"v{report.champion.version}" if report.champion else "none"
    table = Table(
        title=f"gates for {report.model} (run {report.candidate.run_id[:12]}, champion {champion}, "
        f"{report.samples} held-out samples)"
    )
    for column in ("gate", "actual", "threshold", "verdict", "enforced", "detail"):
        table.add_column(column, justify="right" if column in ("actual", "threshold") else "left")
    for gate in report.gates:
        table.add_row(
            escape(gate.name),  # `latency.p50Ratio[batch32]`: a name, not markup
            "-" if gate.actual is None else f"{gate.actual:.4f}",
            "-" if gate.threshold is None else f"{gate.comparison} {gate.threshold:.4f}",
            f"[{VERDICT_COLOURS[gate.verdict]}]{gate.verdict}[/]",
            "yes" if gate.enforced else "advisory",
            escape(gate.detail),
        )
    out.print(table)
    if report.decision == "pass":
        verdict = "[green]PASSED[/green]"
    elif report.decision == "fail":
        verdict = "[red]FAILED[/red]: " + escape(", ".join(g.name for g in report.blocking_failures))
    else:
        names = escape(", ".join(g.name for g in report.inconclusive))
        verdict = f"[yellow]INCONCLUSIVE[/yellow]: {names} (a person decides: `promoter approve`)"
    out.print(f"decision: {verdict}")


@app.command(rich_help_panel=PANEL)
def reproduce(
    run_id: Annotated[str, typer.Argument(help="The candidate's MLflow run id.", show_default=False)],
    workdir: WorkdirOpt = None,
    gpu_tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="The largest difference of any held-out metric accepted when the run or this "
            "retraining used CUDA (on CPU alone they must be identical). Default: 0.01",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reproduction as JSON.")] = False,
) -> None:
    """Retrain a run from its recorded lineage (commit, data hash, config and seed) and compare its
    held-out metrics with the original's: identical on CPU, within --gpu-tolerance with CUDA.

    Nothing is logged or registered. The code running must be the run's commit. Exits 0 when the run
    is reproduced, 3 when it is not (changed data, another config, a dirty checkout, metrics that
    differ), 2 when it cannot be retrained here.
    """
    from promoter.pipelines.reproduce import DEFAULT_GPU_TOLERANCE, ReproductionError, reproduce_run
    from promoter.pipelines.tracking import resolve_workdir

    def report_epoch(metrics: EpochMetrics) -> None:
        err.print(
            f"epoch {metrics.epoch}: loss {metrics.train_loss:.4f}  val/accuracy {metrics.val_accuracy:.4f}",
            highlight=False,
        )

    err.print(f"reproducing run {run_id}", highlight=False)
    try:
        reproduction = reproduce_run(
            run_id,
            resolve_workdir(workdir),
            gpu_tolerance=DEFAULT_GPU_TOLERANCE if gpu_tolerance is None else gpu_tolerance,
            on_epoch=report_epoch,
        )
    except ReproductionError as exc:
        refuse(str(exc))
    if as_json:
        sys.stdout.write(reproduction.to_json() + "\n")
    else:
        _print_reproduction(reproduction)
    if not reproduction.reproduced:
        raise typer.Exit(EXIT_REJECTED)


def _print_reproduction(reproduction: Reproduction) -> None:
    """Every overall metric; of the per-class ones (many), only those that moved."""
    from promoter.pipelines.metrics import CLASS_METRIC_PREFIX

    table = Table(
        title=f"run {reproduction.run_id} at {reproduction.git_commit[:12]}, data "
        f"{reproduction.data_version} ({reproduction.recorded_data_sha256[:12]}…): trained on "
        f"{reproduction.original_device}, retrained on {reproduction.device}"
    )
    for column in ("metric", "original", "reproduced", "difference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    shown = [
        diff
        for diff in reproduction.diffs
        if not diff.name.startswith(CLASS_METRIC_PREFIX) or diff.difference != 0
    ]
    for diff in shown:
        moved = abs(diff.difference) > reproduction.tolerance
        difference = "0" if diff.difference == 0 else f"{diff.difference:+.6f}"
        table.add_row(
            diff.name,
            f"{diff.original:.6f}",
            f"{diff.reproduced:.6f}",
            f"[red]{difference}[/red]" if moved else difference,
        )
    if reproduction.diffs:
        out.print(table)
        unchanged = len(reproduction.diffs) - len(shown)
        if unchanged:
            out.print(f"{unchanged} per-class metrics identical, not shown", highlight=False)
    for problem in reproduction.problems:
        out.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)
    if reproduction.reproduced:
        within = "identical" if reproduction.tolerance == 0 else f"within {reproduction.tolerance:g}"
        out.print(f"verdict: [green]REPRODUCED[/green]: every held-out metric {within}", highlight=False)
    else:
        out.print(
            f"verdict: [red]NOT REPRODUCED[/red]: {len(reproduction.problems)} problem(s)", highlight=False
        )


@app.command(rich_help_panel=PANEL)
def render(
    spec: SpecArg,
    image: Annotated[str | None, typer.Option(help="Container image with promoter installed.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace of the Workflow.")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI as seen from the pods.")
    ] = None,
    vault_addr: Annotated[
        str, typer.Option(help="Vault as seen from the pods.")
    ] = "http://vault.vault.svc:8200",
    vault_role: Annotated[
        str | None, typer.Option(help="The steps' Vault role. Default: the trainer's (manifests/vault).")
    ] = None,
    vault_secret_path: Annotated[
        str | None, typer.Option(help="The steps' KV path. Default: the trainer's (manifests/vault).")
    ] = None,
) -> None:
    """Print the Argo Workflow (YAML) that trains and evaluates the candidate in a cluster (for a
    registered version, `source.modelVersion`: that evaluates the version only).

    Steps get a Vault address, role and path, never a secret: they log in with their service account.
    Role, path and service account are the trainer's in manifests/vault/roles.yaml, as the operator's.
    """
    from promoter.pipelines.workflow import ClusterSettings, build_workflow
    from promoter.vault_setup import TRAINER, load_layout, packaged_layout_directory

    promotion = load_spec(spec)
    defaults = ClusterSettings()
    trainer = load_layout(packaged_layout_directory()).pod(TRAINER, vault_addr)
    vault = dict(trainer.env)  # empty with --vault-addr '': steps without Vault
    if vault:
        vault["VAULT_ROLE"] = vault_role or vault["VAULT_ROLE"]
        vault["VAULT_SECRET_PATH"] = vault_secret_path or vault["VAULT_SECRET_PATH"]
    settings = ClusterSettings(
        image=image or defaults.image,
        namespace=namespace,
        service_account=trainer.service_account,
        tracking_uri=tracking_uri or defaults.tracking_uri,
        env=vault,
        volumes=trainer.volumes,
        volume_mounts=trainer.volume_mounts,
    )
    sys.stdout.write(build_workflow(promotion, settings).to_yaml())


@app.command(rich_help_panel=PANEL)
def pipelines() -> None:
    """List the pipelines a ModelPromotion can train, with their parameters and data versions."""
    from promoter.pipelines import catalogue, get_pipeline

    table = Table(title="pipelines")
    for column in ("name", "data versions", "params (default)"):
        table.add_column(column)
    for name in sorted(catalogue()):
        pipeline = get_pipeline(name)
        params = ", ".join(
            f"{key}={field.default}" for key, field in pipeline.config_type.model_fields.items()
        )
        table.add_row(name, ", ".join(pipeline.data_source().versions()), params)
    out.print(table)
