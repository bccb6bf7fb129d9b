"""The Helm chart (charts/promoter) rendered by the real helm binary of the test bed, for the tests
that check what it installs (RBAC, admission, the operator's settings) and for tests/test_chart.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from .kube import REPO, load_testbed

CHART = REPO / "charts" / "promoter"


def helm(
    *args: str, values: dict[str, Any] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real `helm ARGS`, with `values` (if any) on its stdin (pass `--values -`); not checked."""
    return subprocess.run(
        [str(load_testbed().helm()), *args],
        input=yaml.safe_dump(values) if values is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "promoter",
    namespace: str = "promoter",
    values_files: tuple[Path, ...] = (),
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """`helm template` into objects: hooks included, CRDs not (`crds/` is installed apart)."""
    files = [arg for path in values_files for arg in ("--values", str(path))]
    done = helm(
        "template", release, str(chart), "--namespace", namespace, *files, "--values", "-",
        values=values or {},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"helm template exited {done.returncode}:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of that kind and name."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name} in {[o['metadata']['name'] for o in objects]}"
    return found[0]


def crds(chart: Path = CHART) -> list[dict[str, Any]]:
    """The chart's CRDs (crds/*.yaml), which helm installs before the templates and never deletes."""
    return [yaml.safe_load(path.read_text()) for path in sorted((chart / "crds").glob("*.yaml"))]
