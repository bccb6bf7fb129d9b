"""`promoter gitops`: the git repository Argo CD syncs each environment from (promoter.gitops)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from promoter.cli.app import app, out, refuse

PANEL = "GitOps"

gitops = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(
    gitops,
    name="gitops",
    rich_help_panel=PANEL,
    help="Promote with git: a repository whose branches Argo CD syncs into staging and production.",
)


@gitops.command("init")
def init(
    directory: Annotated[
        Path,
        typer.Argument(help="Where to write the repository: a new or empty directory.", show_default=False),
    ],
    repo_url: Annotated[
        str,
        typer.Option(
            help="The git URL Argo CD reads this repository from; the staging operator pushes "
            "production's records to it.",
            show_default=False,
        ),
    ],
    image: Annotated[
        str,
        typer.Option(
            help="The promoter image, pinned by digest: REPOSITORY@sha256:<64 hex>.", show_default=False
        ),
    ],
    model: Annotated[str, typer.Option(help="The registered model both environments serve.")] = "digits",
    staging_server: Annotated[
        str, typer.Option(help="The staging cluster's API server, as Argo CD names it.")
    ] = "https://kubernetes.default.svc",
    production_server: Annotated[
        str, typer.Option(help="The production cluster's API server, as Argo CD names it.")
    ] = "https://kubernetes.default.svc",
    staging_namespace: Annotated[str, typer.Option(help="Where staging runs.")] = "staging",
    production_namespace: Annotated[str, typer.Option(help="Where production runs.")] = "production",
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="The one MLflow registry both environments use. Default: production's own tracking "
            "server, which staging reaches only in the same cluster.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the GitOps repository: the chart, each environment's values and promotions, the two Argo CD
    Applications and a README with the promote, merge and revert commands. Refuses (exit 2, writing
    nothing) a directory that is not empty, a bad model name and an image that is not digest-pinned."""
    import shlex

    from promoter.gitops.scaffold import ARGOCD_NAMESPACE, Repository, ScaffoldError, production, staging
    from promoter.gitops.scaffold import init as write

    repository = Repository(
        repo_url=repo_url,
        image=image,
        model=model,
        staging=staging(staging_namespace, staging_server),
        production=production(production_namespace, production_server),
        tracking_uri=tracking_uri,
    )
    try:
        written = write(directory, repository)
    except ScaffoldError as exc:
        refuse(str(exc))
    chart = [p for p in written if p.parts[:2] == ("charts", "promoter")]
    shown = escape(str(directory))
    out.print(f"Wrote {len(written)} files to {shown}:", highlight=False)
    out.print(f"  charts/promoter/  the promoter chart ({len(chart)} files), shared by both environments")
    for path in written:
        if path not in chart:
            out.print(f"  {escape(str(path))}", highlight=False)
    for env in repository.environments:
        out.print(
            f"{env.name}: branch {env.branch} -> namespace {env.namespace} of {env.server}, "
            f"promotes to @{env.alias}",
            highlight=False,
        )
    out.print(
        "\nNext (README.md has the webhook certificate step and the promote, merge and revert commands):"
    )
    main, branch = repository.production.branch, repository.staging.branch
    for command in (
        f"cd {shlex.quote(str(directory))}",
        f"git init -b {main} && git add -A && git commit -m 'chore: promoter gitops layout'",
        f"git branch {branch}",
        f"git remote add origin {shlex.quote(repo_url)}",
        f"git push -u origin {main} {branch}",
        f"kubectl apply -n {ARGOCD_NAMESPACE} -f applications/",
    ):
        out.print(f"  {escape(command)}", highlight=False)
