"""The `promoter` command. Heavy imports (torch, mlflow) happen inside commands so `--help` is instant.

Exit codes, shared by every command that decides: 0 success or promoted, 3 rejected by a gate,
1 failed (something broke), 2 bad input (invalid spec or arguments), 4 waiting for an approval.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from promoter import __version__
from promoter.promotion.spec import ModelPromotion, SpecError, load_promotion

if TYPE_CHECKING:
    from promoter.local.rollout import Process
    from promoter.promotion.gates import GateReport
    from promoter.promotion.status import PromotionStatus

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3
EXIT_AWAITING = 4

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


def _refuse(message: str) -> NoReturn:
    """Bad input for a command: say why and exit 2, changing nothing."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def _load(path: Path) -> ModelPromotion:
    try:
        return load_promotion(path)
    except SpecError as exc:
        _refuse(str(exc))


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
            _refuse(str(exc))
    assert candidate.result is not None  # only resumed workflow steps reuse a finished run
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
            _refuse(str(exc))
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
    vault_addr: Annotated[
        str, typer.Option(help="Vault as seen from the pods.")
    ] = "http://vault.vault.svc:8200",
    vault_role: Annotated[
        str, typer.Option(help="The steps' Vault role (manifests/vault).")
    ] = "promoter-trainer",
    vault_secret_path: Annotated[str, typer.Option(help="The steps' KV path.")] = "promoter/trainer",
) -> None:
    """Print the Argo Workflow (YAML) that trains and evaluates the candidate in a cluster.

    Steps get a Vault address, role and path, never a secret: they log in with their service account.
    """
    from promoter.pipelines.workflow import ClusterSettings, build_workflow

    promotion = _load(spec)
    if promotion.spec.source.train is None:
        _refuse("spec.source.modelVersion promotes a registered version: nothing to train")
    defaults = ClusterSettings()
    vault = {"VAULT_ADDR": vault_addr, "VAULT_ROLE": vault_role, "VAULT_SECRET_PATH": vault_secret_path}
    settings = ClusterSettings(
        image=image or defaults.image,
        namespace=namespace,
        tracking_uri=tracking_uri or defaults.tracking_uri,
        env=vault | {"VAULT_AUTH_METHOD": "kubernetes"},
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
        int,
        typer.Option(
            min=0,
            help="Intra-op threads per worker (0: torch's default, one per core); scale --workers first.",
        ),
    ] = 1,
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
    from promoter.secrets import VaultError, load_process_secrets
    from promoter.serving.app import ServeSettings
    from promoter.serving.metrics import MULTIPROC_ENV
    from promoter.serving.model import ModelResolutionError, resolve

    try:
        load_process_secrets()
    except VaultError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    client = configure_tracking(resolve_workdir(workdir))
    try:
        identity = resolve(model_uri, client)
    except ModelResolutionError as exc:
        _refuse(str(exc))
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
        proxy_headers=False,  # client addresses are never used: skip parsing X-Forwarded-* per request
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


# --- a whole promotion on this machine: the embedded default -----------------------------------

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
        _refuse(str(exc))
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


@app.command()
def run(
    spec: SpecArg, workdir: WorkdirOpt = None, serve_args: ServeArgsOpt = "", as_json: JsonOpt = False
) -> None:
    """Run a whole promotion on this machine: train, evaluate, gate, register, deploy a preview,
    load-test it, promote. Re-running the same promotion resumes it where it stopped.

    Exits 0 promoted, 3 rejected by a gate, 1 failed, 4 waiting for `promoter approve`.
    """
    from promoter.pipelines.tracking import resolve_workdir

    _drive(_load(spec), resolve_workdir(workdir), serve_args, as_json)


def _stored(workdir: Path, name: str) -> ModelPromotion:
    from promoter.local.store import SPEC_FILE, promotions_dir

    path = promotions_dir(workdir) / name / SPEC_FILE
    if not path.exists():
        _refuse(f"no promotion {name!r} in {workdir}")
    return _load(path)


@app.command()
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
        _refuse(f"{name} is {phase}, not AwaitingApproval")
    _drive(promotion, root, serve_args, as_json, request="approved_by")


@app.command()
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
        _refuse(f"{model!r} has no @champion in {root}: nothing to roll back")
    current = [
        (promotion, state)
        for promotion, state in stored_promotions(root)
        if promotion.spec.model == model and state.phase == "Promoted" and state.model_version == champion
    ]
    if not current:
        _refuse(f"the @champion of {model!r} (version {champion}) was not put there by a promotion in {root}")
    promotion, state = current[-1]
    previous = state.previous_champion
    if previous is None:
        _refuse(f"{promotion.metadata.name} made the first champion of {model!r}: nothing to roll back to")
    err.print(f"rolling back {model}: version {champion} -> {previous} ({promotion.metadata.name})")
    _drive(promotion, root, serve_args, as_json, request="rollback_requested_by")


@app.command()
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
            _refuse(f"no promotion {name!r}")
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


@app.command()
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

    registry = local_platform(resolve_workdir(workdir)).registry
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


@app.command()
def down(workdir: WorkdirOpt = None) -> None:
    """Stop the local servers and active proxies that `promoter run` left serving."""
    from promoter.local.rollout import LocalRollouts
    from promoter.pipelines.tracking import resolve_workdir, tracking_uri

    root = resolve_workdir(workdir)
    rollouts = LocalRollouts(root, tracking_uri(root))
    for name in rollouts.rollouts():
        rollouts.down(name)
        err.print(f"stopped rollout {name}")


@app.command("vault-setup")
def vault_setup(
    directory: Annotated[Path, typer.Option(help="Policies and roles to apply.")] = Path("manifests/vault"),
    kubernetes_host: Annotated[
        str | None, typer.Option(help="API server URL for the Kubernetes auth method (in-cluster logins).")
    ] = None,
    kubernetes_ca_file: Annotated[
        Path | None, typer.Option(help="The API server's CA certificate (PEM).")
    ] = None,
    jwt_public_key_file: Annotated[
        Path | None, typer.Option(help="Service-account token signing key (PEM), for the JWT auth method.")
    ] = None,
    jwt_issuer: Annotated[str | None, typer.Option(help="The `iss` those tokens carry.")] = None,
) -> None:
    """Apply each component's Vault policy and auth roles (an admin step: VAULT_ADDR and VAULT_TOKEN)."""
    import os

    import hvac

    from promoter.vault_setup import apply_layout, load_layout

    if not os.environ.get("VAULT_ADDR") or not os.environ.get("VAULT_TOKEN"):
        _refuse("set VAULT_ADDR and an admin VAULT_TOKEN")
    try:
        layout = load_layout(directory)
        ca = kubernetes_ca_file.read_text() if kubernetes_ca_file else None
        public_key = jwt_public_key_file.read_text() if jwt_public_key_file else None
    except (OSError, ValueError, KeyError) as exc:
        _refuse(f"{directory}: {exc}")
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    role_ids = apply_layout(
        client,
        layout,
        jwt_public_keys=[public_key] if public_key else None,
        jwt_issuer=jwt_issuer,
        kubernetes_host=kubernetes_host,
        kubernetes_ca_pem=ca,
    )
    for component in layout.components:
        out.print(
            f"{component.name}: policy {component.policy_name} reads "
            f"{layout.kv_mount}/{component.secret_path}; AppRole role id {role_ids[component.name]}",
            highlight=False,
        )


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch this namespace (repeatable). Default: all."),
    ] = None,
    peering: Annotated[
        str, typer.Option(help="KopfPeering object shared by the replicas; '' runs standalone.")
    ] = "promoter",
    priority: Annotated[int, typer.Option(help="Peering priority: the highest alive replica acts.")] = 0,
    peering_lifetime: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="PROMOTER_PEERING_LIFETIME",
            help="Seconds a replica that stopped answering still counts as alive.",
        ),
    ] = 60,
    liveness_port: Annotated[int, typer.Option(envvar="PROMOTER_LIVENESS_PORT")] = 8080,
    metrics_port: Annotated[int, typer.Option(envvar="PROMOTER_METRICS_PORT")] = 9090,
    host: Annotated[str, typer.Option(envvar="PROMOTER_OPERATOR_HOST")] = "0.0.0.0",
) -> None:
    """Run the Kubernetes operator: drive every ModelPromotion through Argo Workflows and Argo
    Rollouts, with status, Events, JSON logs, /healthz and Prometheus metrics.

    Cluster settings come from the environment: PROMOTER_IMAGE, MLFLOW_TRACKING_URI,
    PROMOTER_PIPELINE_SERVICE_ACCOUNT, PROMOTER_LOADTEST_SERVICE_ACCOUNT, PROMOTER_SERVICE_URL,
    PROMOTER_RECONCILE_SECONDS, and VAULT_ADDR/VAULT_ROLE/VAULT_SECRET_PATH.
    """
    from promoter.operator.run import OperatorOptions, run_operator

    run_operator(
        OperatorOptions(
            namespaces=tuple(namespace or ()),
            peering=peering or None,
            priority=priority,
            peering_lifetime=peering_lifetime,
            liveness_port=liveness_port,
            metrics_port=metrics_port,
            host=host,
        )
    )


@app.command("load-test")
def load_test(
    host: Annotated[str, typer.Option(help="The address to load, e.g. http://digits-preview:8080")],
    profile: Annotated[str, typer.Option(help="The rollout's loadTest, as JSON (spec.rollout.loadTest).")],
    result_file: Annotated[Path, typer.Option(help="Where the result JSON goes.")] = Path(
        "/dev/termination-log"
    ),
) -> None:
    """Load-test one address with Locust and write what it measured: the cluster's load-test Job.

    Exits 1 without writing a result when the test could not measure anything, so a crash is never
    read as a pass.
    """
    import json
    import tempfile

    from pydantic import ValidationError

    from promoter.loadtest.runner import LoadTestError, run_locust
    from promoter.promotion.spec import LoadTest

    try:
        load = LoadTest.model_validate(json.loads(profile))
    except (ValueError, ValidationError) as exc:
        _refuse(f"--profile: {exc}")
    with tempfile.TemporaryDirectory(prefix="promoter-loadtest-") as scratch:
        try:
            result = run_locust(host, load, Path(scratch))
        except LoadTestError as exc:
            err.print(f"[red]load test failed:[/red] {exc}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
    result_file.write_text(result.model_dump_json(by_alias=True))
    out.print(
        f"{result.requests} requests, {result.rps:.0f} rps, p95 {result.p95_ms:.1f} ms, "
        f"errors {result.error_rate:.4f}",
        highlight=False,
    )


if __name__ == "__main__":
    app()
