"""`promoter serve`: one exact model version over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.app import EXIT_FAILED, WorkdirOpt, app, err, refuse

PANEL = "Serving"


@app.command(rich_help_panel=PANEL)
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
    import os
    import shutil
    import tempfile

    import uvicorn

    from promoter.pipelines.tracking import configure_tracking, resolve_workdir
    from promoter.secrets import VaultError, load_process_secrets
    from promoter.serving.metrics import MULTIPROC_ENV
    from promoter.serving.model import ModelResolutionError, resolve
    from promoter.serving.settings import ServeSettings
    from promoter.settings import SettingsError

    try:
        load_process_secrets()
    except SettingsError as exc:
        refuse(str(exc))
    except VaultError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    client = configure_tracking(resolve_workdir(workdir))
    try:
        identity = resolve(model_uri, client)
    except ModelResolutionError as exc:
        refuse(str(exc))
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
        settings = settings.model_copy(update={"workers": workers, "ready_dir": ready_dir})
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
