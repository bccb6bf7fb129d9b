"""Commands that run in or set up a cluster: the operator, the load-test Job, Vault's layout, MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.app import EXIT_FAILED, app, err, load_own_secrets, out, refuse

PANEL = "Cluster"


@app.command("vault-setup", rich_help_panel=PANEL)
def vault_setup(
    directory: Annotated[
        Path | None,
        typer.Option(help="Policies and roles to apply. Default: manifests/vault, as packaged."),
    ] = None,
    kubernetes_host: Annotated[
        str | None, typer.Option(help="API server URL for the Kubernetes auth method (in-cluster logins).")
    ] = None,
    kubernetes_ca_file: Annotated[
        Path | None, typer.Option(help="The API server's CA certificate (PEM).")
    ] = None,
    kubernetes_reviewer_jwt_file: Annotated[
        Path | None,
        typer.Option(
            help="A token of a service account bound to ClusterRole system:auth-delegator: OpenBao "
            "checks logins with it (TokenReview). Needed when OpenBao runs outside the cluster."
        ),
    ] = None,
    jwt_public_key_file: Annotated[
        Path | None, typer.Option(help="Service-account token signing key (PEM), for the JWT auth method.")
    ] = None,
    jwt_issuer: Annotated[str | None, typer.Option(help="The `iss` those tokens carry.")] = None,
    mlflow_users: Annotated[
        bool,
        typer.Option(
            help="Give each component that talks to MLflow its own MLflow user and password (kept if "
            "already there), and the tracking server what it needs to create them."
        ),
    ] = False,
    rotate_mlflow_passwords: Annotated[
        bool, typer.Option(help="With --mlflow-users: new passwords even where one exists.")
    ] = False,
    tracking_backend_store_uri_file: Annotated[
        Path | None,
        typer.Option(
            help="With --mlflow-users: a file holding the tracking server's backend store URI "
            "(e.g. PostgreSQL with its password), stored as its Vault key backend_store_uri."
        ),
    ] = None,
) -> None:
    """Apply each component's Vault policy and auth roles (an admin step: VAULT_ADDR and VAULT_TOKEN).

    Never prints a secret: user names, paths and key names only."""
    import os

    import hvac

    from promoter.vault_setup import (
        apply_layout,
        load_layout,
        packaged_layout_directory,
        provision_mlflow_users,
    )

    if not os.environ.get("VAULT_ADDR") or not os.environ.get("VAULT_TOKEN"):
        refuse("set VAULT_ADDR and an admin VAULT_TOKEN")
    if (rotate_mlflow_passwords or tracking_backend_store_uri_file) and not mlflow_users:
        refuse("--rotate-mlflow-passwords and --tracking-backend-store-uri-file need --mlflow-users")
    directory = directory or packaged_layout_directory()
    try:
        layout = load_layout(directory)
        ca = kubernetes_ca_file.read_text() if kubernetes_ca_file else None
        reviewer = kubernetes_reviewer_jwt_file.read_text().strip() if kubernetes_reviewer_jwt_file else None
        public_key = jwt_public_key_file.read_text() if jwt_public_key_file else None
        if mlflow_users:
            layout.component("tracking")  # the layout must have the tracking server's path
    except (OSError, ValueError, KeyError) as exc:
        refuse(f"{directory}: {exc}")
    backend_store_uri = None
    if tracking_backend_store_uri_file:
        try:
            backend_store_uri = tracking_backend_store_uri_file.read_text().strip()
        except OSError as exc:
            refuse(f"--tracking-backend-store-uri-file: {exc.strerror}")
        if not backend_store_uri:
            refuse("--tracking-backend-store-uri-file: the file is empty")
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    role_ids = apply_layout(
        client,
        layout,
        jwt_public_keys=[public_key] if public_key else None,
        jwt_issuer=jwt_issuer,
        kubernetes_host=kubernetes_host,
        kubernetes_ca_pem=ca,
        kubernetes_reviewer_jwt=reviewer,
    )
    for component in layout.components:
        out.print(
            f"{component.name}: policy {component.policy_name} reads "
            f"{layout.kv_mount}/{component.secret_path}; AppRole role id {role_ids[component.name]}",
            highlight=False,
        )
    if mlflow_users:
        users = provision_mlflow_users(
            client, layout, rotate=rotate_mlflow_passwords, backend_store_uri=backend_store_uri
        )
        for name, username in users.items():
            out.print(
                f"{name}: MLflow user {username}, password in "
                f"{layout.kv_mount}/{layout.component(name).secret_path}",
                highlight=False,
            )
        tracking = layout.component("tracking")
        out.print(
            f"tracking: admin password, Flask secret key and the users' password hashes in "
            f"{layout.kv_mount}/{tracking.secret_path}",
            highlight=False,
        )


@app.command("tracking-server", rich_help_panel=PANEL)
def tracking_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 5000,
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            help="Runs, experiments and the registry, e.g. sqlite:///mlflow.db. "
            "Default: the Vault key backend_store_uri (PostgreSQL: its password stays off the command line)."
        ),
    ] = None,
    artifacts_destination: Annotated[
        str, typer.Option(help="Where the served artifacts are stored (a path or s3://...).")
    ] = "./mlartifacts",
    workers: Annotated[int, typer.Option(min=1)] = 1,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Host headers MLflow accepts, comma-separated (e.g. the Service's DNS names). "
            "Default: MLflow's, localhost only."
        ),
    ] = None,
) -> None:
    """MLflow's tracking server behind its basic-auth app; every component's MLflow user from Vault.

    Logs into Vault as the tracking component (VAULT_ADDR, VAULT_ROLE, VAULT_SECRET_PATH, ...),
    writes the auth ini into $PROMOTER_TRACKING_RUN_DIR (default /run/mlflow), creates the users and
    their grants, then becomes `mlflow server`. See promoter.tracking_server for each user's rights.
    """
    import os
    import sys

    from promoter.secrets import SecretStore, VaultError
    from promoter.settings import SettingsError
    from promoter.tracking_server import (
        AUTH_DATABASE_NAME,
        TrackingSecrets,
        TrackingServerSettings,
        prepare_auth_store,
        server_argv,
        server_env,
        write_auth_config,
    )

    if not os.environ.get("VAULT_ADDR"):
        refuse(
            "set VAULT_ADDR, VAULT_ROLE and VAULT_SECRET_PATH: the tracking server's users come from Vault"
        )
    try:
        settings = TrackingServerSettings.load()
        store = SecretStore.from_env()
    except SettingsError as exc:
        refuse(str(exc))
    try:
        values = store.read()
        tracking = TrackingSecrets.from_vault(values)
    except VaultError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    backend = backend_store_uri or tracking.backend_store_uri
    if not backend:
        refuse(
            "--backend-store-uri is not given and the tracking server's Vault path has no backend_store_uri"
        )
    database_uri = (
        settings.auth_database_uri or f"sqlite:///{settings.run_dir.resolve() / AUTH_DATABASE_NAME}"
    )
    config = write_auth_config(settings.run_dir, tracking, database_uri)
    users = prepare_auth_store(database_uri, tracking)
    err.print(
        f"MLflow users ready: {', '.join(users)} (admin {tracking.admin_username}); "
        f"auth config {config}; serving on {host}:{port}",
        highlight=False,
    )
    argv = server_argv(
        host=host,
        port=port,
        artifacts_destination=artifacts_destination,
        workers=workers,
        allowed_hosts=allowed_hosts,
    )
    env = server_env(os.environ, tracking, auth_config=config, backend_store_uri=backend)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", *argv], env)


@app.command(rich_help_panel=PANEL)
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
            envvar="PROMOTER_OPERATOR_PEERING_LIFETIME",
            help="Seconds a replica that stopped answering still counts as alive.",
        ),
    ] = 60,
    liveness_port: Annotated[int, typer.Option(envvar="PROMOTER_OPERATOR_LIVENESS_PORT")] = 8080,
    metrics_port: Annotated[int, typer.Option(envvar="PROMOTER_OPERATOR_METRICS_PORT")] = 9090,
    host: Annotated[str, typer.Option(envvar="PROMOTER_OPERATOR_HOST")] = "0.0.0.0",
    webhook_port: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="PROMOTER_OPERATOR_WEBHOOK_PORT",
            help="Serve the admission webhook (HTTPS) on this port; 0: no webhook. "
            "Needs --webhook-cert and --webhook-key.",
        ),
    ] = 0,
    webhook_cert: Annotated[
        Path | None,
        typer.Option(envvar="PROMOTER_OPERATOR_WEBHOOK_CERT", help="The webhook's TLS certificate (PEM)."),
    ] = None,
    webhook_key: Annotated[
        Path | None,
        typer.Option(envvar="PROMOTER_OPERATOR_WEBHOOK_KEY", help="The webhook's TLS private key (PEM)."),
    ] = None,
) -> None:
    """Run the Kubernetes operator: drive every ModelPromotion through Argo Workflows and Argo
    Rollouts, with status, Events, JSON logs, /healthz and Prometheus metrics.

    Cluster settings come from the environment: PROMOTER_OPERATOR_IMAGE, MLFLOW_TRACKING_URI,
    PROMOTER_OPERATOR_SERVICE_URL, PROMOTER_OPERATOR_RECONCILE_SECONDS,
    PROMOTER_OPERATOR_VAULT_LAYOUT, and the operator's own VAULT_ADDR, VAULT_ROLE, VAULT_SECRET_PATH.
    Its pods get their own component's Vault role and path (manifests/vault/roles.yaml).
    """
    from promoter.operator.run import OperatorOptions, WebhookOptions, run_operator
    from promoter.operator.settings import OperatorSettings
    from promoter.settings import SettingsError

    webhook = None
    if webhook_port:
        if webhook_cert is None or webhook_key is None:
            refuse("--webhook-port needs --webhook-cert and --webhook-key (see `promoter webhook-cert`)")
        for option, path in (("--webhook-cert", webhook_cert), ("--webhook-key", webhook_key)):
            if not path.is_file():
                refuse(f"{option}: {path} is not a readable file")
        webhook = WebhookOptions(webhook_port, webhook_cert, webhook_key)
    options = OperatorOptions(
        namespaces=tuple(namespace or ()),
        peering=peering or None,
        priority=priority,
        peering_lifetime=peering_lifetime,
        liveness_port=liveness_port,
        metrics_port=metrics_port,
        host=host,
        webhook=webhook,
    )
    try:
        # both read at start: the operator's settings, then its own Vault settings (run_operator)
        run_operator(options, OperatorSettings.load())
    except SettingsError as exc:
        refuse(str(exc))


@app.command("webhook-cert", rich_help_panel=PANEL)
def webhook_cert(
    host: Annotated[
        list[str],
        typer.Option(
            "--host",
            help="A name or address the API server dials the webhook at (repeatable), e.g. "
            "promoter-operator-webhook.promoter.svc",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Where ca.crt, tls.crt and tls.key go.")] = Path(
        "webhook-tls"
    ),
    days: Annotated[int, typer.Option(min=1, help="Validity of the CA and the certificate.")] = 365,
) -> None:
    """Issue a CA and the admission webhook's certificate, for a cluster without cert-manager.

    tls.crt and tls.key are what `promoter operator --webhook-cert/--webhook-key` serves; ca.crt is
    the webhook configurations' caBundle (the chart reads it from the Secret made of these files).
    """
    from promoter.operator.webhook_certificates import issue_webhook_certificate

    try:
        issue_webhook_certificate(host, days=days).write(out_dir)
    except OSError as exc:
        refuse(f"--out: cannot write {out_dir}: {exc.strerror}")
    out.print(
        f"wrote {out_dir}/ca.crt, tls.crt and tls.key for {', '.join(host)}", highlight=False, soft_wrap=True
    )


@app.command("load-test", rich_help_panel=PANEL)
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
        refuse(f"--profile: {exc}")
    load_own_secrets()  # the load tester's own role: whatever calling the preview may need
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
