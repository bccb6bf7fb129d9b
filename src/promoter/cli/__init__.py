"""The `promoter` command. Heavy imports (torch, mlflow) happen inside commands so `--help` is instant.

One module per command group; importing one registers its commands on `app`, and `--help` lists
the groups in this order.
"""

from __future__ import annotations

from promoter.cli.app import app

# isort: off
from promoter.cli import pipeline, gates, local, serve, cluster, gitops
# isort: on

__all__ = ["app", "cluster", "gates", "gitops", "local", "pipeline", "serve"]
