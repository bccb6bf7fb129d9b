"""The `promoter` command. Heavy imports (torch, mlflow) happen inside commands so `--help` is instant.

Exit codes, shared by every command that decides: 0 success or promoted, 3 rejected by a gate,
1 failed (something broke), 2 bad input (invalid spec or arguments).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from promoter import __version__
from promoter.spec import ModelPromotion, SpecError, load_promotion

if TYPE_CHECKING:
    from promoter.operator.gates import GateReport

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3

app = typer.Typer(no_args_is_help=True, add_completion=False)
err = Console(stderr=True)
out = Console()

SpecArg = Annotated[Path, typer.Argument(help="A ModelPromotion YAML file.", show_default=False)]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Where local state lives (MLflow SQLite store, artifacts, reports). "
        "Default: $PROMOTER_WORKDIR or ./.promoter"
    ),
]


def _load(path: Path) -> ModelPromotion:
    try:
        return load_promotion(path)
    except SpecError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"promoter {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Move ML models from training to production only when they have earned it."""


@app.command()
def train(spec: SpecArg, workdir: WorkdirOpt = None) -> None:
    """Train and log one candidate run; prints its MLflow run id (alone on the last line of stdout)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from promoter.lineage import LineageError
    from promoter.pipelines.data import DataError
    from promoter.pipelines.tracking import resolve_workdir
    from promoter.pipelines.train import train_candidate

    promotion = _load(spec)
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
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    last = candidate.result.history[-1]
    err.print(
        f"trained [bold]{candidate.model_uri}[/bold] on {candidate.result.device}: "
        f"val/accuracy {last.val_accuracy:.4f}, {candidate.result.samples_per_second:,.0f} samples/s"
    )
    out.print(candidate.run_id, highlight=False)


@app.command()
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

    Exits 0 when every enforced gate passes, 3 when one fails.
    """
    from promoter.pipelines.data import DataError
    from promoter.pipelines.evaluate import EvaluationError, evaluate_candidate
    from promoter.pipelines.tracking import resolve_workdir

    promotion = _load(spec)
    root = resolve_workdir(workdir)
    report_path = report or root / "gate-reports" / f"{run_id}.json"
    with err.status(f"evaluating run {run_id} and the @champion of {promotion.spec.model}"):
        try:
            evaluation = evaluate_candidate(promotion, run_id, root, report_path)
        except (SpecError, DataError, EvaluationError) as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    _print_gate_report(evaluation.report)
    out.print(f"gate report: {report_path}", highlight=False)
    if not evaluation.report.passed:
        raise typer.Exit(EXIT_REJECTED)


def _print_gate_report(report: GateReport) -> None:
    champion = f"v{report.champion.version}" if report.champion else "none"
    table = Table(
        title=f"gates for {report.model} (run {report.candidate.run_id[:12]}, champion {champion}, "
        f"{report.samples} held-out samples)"
    )
    for column in ("gate", "actual", "threshold", "verdict", "enforced"):
        table.add_column(column, justify="right" if column in ("actual", "threshold") else "left")
    colours = {"pass": "green", "fail": "red", "skipped": "yellow"}
    for gate in report.gates:
        table.add_row(
            gate.name,
            "-" if gate.actual is None else f"{gate.actual:.4f}",
            "-" if gate.threshold is None else f">= {gate.threshold:.4f}",
            f"[{colours[gate.verdict]}]{gate.verdict}[/]",
            "yes" if gate.enforced else "advisory",
        )
    out.print(table)
    verdict = (
        "[green]PASSED[/green]"
        if report.passed
        else ("[red]FAILED[/red]: " + ", ".join(g.name for g in report.blocking_failures))
    )
    out.print(f"decision: {verdict}")


@app.command()
def render(
    spec: SpecArg,
    image: Annotated[str | None, typer.Option(help="Container image with promoter installed.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace of the Workflow.")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI as seen from the pods.")
    ] = None,
) -> None:
    """Print the Argo Workflow (YAML) that trains and evaluates the candidate in a cluster."""
    from promoter.pipelines.workflow import ClusterSettings, build_workflow

    promotion = _load(spec)
    if promotion.spec.source.train is None:
        err.print(
            "[red]error:[/red] spec.source.modelVersion promotes a registered version: nothing to train"
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    defaults = ClusterSettings()
    settings = ClusterSettings(
        image=image or defaults.image, namespace=namespace, tracking_uri=tracking_uri or defaults.tracking_uri
    )
    sys.stdout.write(build_workflow(promotion, settings).to_yaml())


@app.command()
def serve(
    model_uri: Annotated[
        str,
        typer.Option(
            help="models:/NAME/VERSION, models:/NAME@ALIAS (resolved once, at start) or runs:/RUN_ID/model.",
            envvar="PROMOTER_MODEL_URI",
        ),
    ],
    host: Annotated[str, typer.Option(envvar="PROMOTER_SERVE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PROMOTER_SERVE_PORT")] = 8080,
    workers: Annotated[int, typer.Option(min=1, envvar="PROMOTER_SERVE_WORKERS")] = 1,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Most inputs in one forward pass.")] = 256,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="How long a small batch may wait for more.")
    ] = 0.0,
    max_request_inputs: Annotated[int, typer.Option(min=1, help="Most inputs in one request.")] = 1024,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body.")] = 8 * 1024 * 1024,
    low_confidence: Annotated[
        float,
        typer.Option(min=0, max=1, help="Top probability below which a prediction counts as low-confidence."),
    ] = 0.5,
    torch_threads: Annotated[
        int, typer.Option(min=0, help="Intra-op threads per worker (0: torch default).")
    ] = 0,
    graceful_seconds: Annotated[
        int, typer.Option(help="How long in-flight requests may finish on SIGTERM.")
    ] = 30,
    inject_latency_ms: Annotated[
        float,
        typer.Option(
            min=0, help="Testing aid: delay every prediction, e.g. to check that a latency gate rejects."
        ),
    ] = 0.0,
    workdir: WorkdirOpt = None,
) -> None:
    """Serve one exact model version over HTTP: JSON, Open Inference Protocol (V2), /metrics."""
    import dataclasses
    import os
    import shutil
    import tempfile

    import uvicorn

    from promoter.pipelines.tracking import configure_tracking, resolve_workdir
    from promoter.serving.app import ServeSettings
    from promoter.serving.metrics import MULTIPROC_ENV
    from promoter.serving.model import ModelResolutionError, resolve

    client = configure_tracking(resolve_workdir(workdir))
    try:
        identity = resolve(model_uri, client)
    except ModelResolutionError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    err.print(
        f"serving {identity.uri} (requested {identity.requested_uri}, run {identity.run_id}) "
        f"on http://{host}:{port} with {workers} worker(s)",
        highlight=False,
    )
    settings = ServeSettings(
        model_uri=identity.uri,
        requested_model_uri=identity.requested_uri,
        inject_latency_ms=inject_latency_ms,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_request_inputs=max_request_inputs,
        max_body_bytes=max_body_bytes,
        low_confidence=low_confidence,
        torch_threads=torch_threads,
    )
    os.environ["MLFLOW_TRACKING_URI"] = client.tracking_uri
    if workers > 1:
        # Several processes answer /metrics: they share samples through files (emptied at start).
        directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="promoter-metrics-")
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = directory
        ready_dir = tempfile.mkdtemp(prefix="promoter-ready-")
        settings = dataclasses.replace(settings, workers=workers, ready_dir=ready_dir)
    os.environ.update(settings.to_env())
    uvicorn.run(
        "promoter.serving.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=graceful_seconds,
        access_log=False,
        log_level="warning",
    )


@app.command()
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


if __name__ == "__main__":
    app()
