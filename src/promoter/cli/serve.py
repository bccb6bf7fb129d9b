"""`promoter serve`: one exact model version over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.app import EXIT_FAILED, WorkdirOpt, app, err, load_own_secrets, refuse

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
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, envvar="PROMOTER_SERVE_PORT", help="0: any free port (see --port-file)."
        ),
    ] = 8080,
    port_file: Annotated[
        Path | None,
        typer.Option(help="Write the port listened on to this file once it is bound (for --port 0)."),
    ] = None,
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
    from uvicorn.supervisors import Multiprocess

    from promoter.local.store import replace_file
    from promoter.pipelines.tracking import configure_tracking, resolve_workdir
    from promoter.serving.metrics import MULTIPROC_ENV
    from promoter.serving.model import ModelResolutionError, resolve
    from promoter.serving.settings import ServeSettings

    load_own_secrets()
    listener = _bind(host, port)
    client = configure_tracking(resolve_workdir(workdir))
    try:
        identity = resolve(model_uri, client)
    except ModelResolutionError as exc:
        refuse(str(exc))
    port = int(listener.getsockname()[1])
    if port_file is not None:
        replace_file(port_file, str(port))
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
    config = uvicorn.Config(
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
    # uvicorn.run, on the socket bound above (uvicorn would bind its own, later, and exit 3 if busy)
    if workers > 1:
        Multiprocess(config, sockets=[listener]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[listener])
    if not server.started:
        err.print("[red]error:[/red] the server did not start: see the lines above", highlight=False)
        raise typer.Exit(EXIT_FAILED)


def _bind(host: str, port: int) -> socket.socket:
    """The listening address, claimed before anything slow happens: a busy port is said at once, in
    words, with exit 1 (uvicorn would say it after loading the model, with exit 3, which means
    "rejected by a gate" here). Connections are refused until the server listens, once it is ready
    to accept them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        err.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    listener.set_inheritable(True)  # uvicorn's worker processes inherit it
    return listener
