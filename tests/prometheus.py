"""A real Prometheus for the tests (Debian's static 2.42 binary from the test bed cache), and the
queries of the committed Grafana dashboards, ready to run against it.

Prometheus listens on loopback on a free port, keeps its TSDB in a temporary directory, scrapes
every second, and finds its targets in a file_sd file the test rewrites as servers come and go
(Prometheus watches the file: no reload). Grafana cannot run here (research notes, section 1), so
a dashboard is checked as Grafana would use it: each panel's query, with Grafana's interval
variables substituted, must return series from what Prometheus scraped.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.local.rollout import free_port

from .kube import load_testbed

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "charts" / "promoter" / "dashboards"
# What Grafana puts in place of its interval variables: $__rate_interval is at least four scrape
# intervals; 1 m is what it gives a 15 s scrape, and ample for the 1 s scrape here.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def promql(self) -> str:
        expr = self.expr
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        return expr

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r} / {self.ref_id}: {self.promql}"


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested (collapsed) panels included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def dashboard_queries(directory: Path = DASHBOARDS) -> list[PanelQuery]:
    queries = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in all_panels(board["panels"]):
            for target in panel.get("targets") or []:
                queries.append(PanelQuery(path.name, panel["title"], target["refId"], target["expr"]))
    return queries


def promtool_check_metrics(exposition: bytes) -> subprocess.CompletedProcess[str]:
    """Prometheus' own linter of an exposition (names, suffixes, units, help)."""
    promtool = load_testbed().prometheus_binary("promtool")
    return subprocess.run(
        [str(promtool), "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_lint_clean(exposition: bytes) -> None:
    checked = promtool_check_metrics(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""


class Prometheus:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets_file = directory / "targets.json"
        self._targets: dict[str, dict[str, str]] = {}
        self.set_targets({})
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "promoter",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (directory / "prometheus.log").open("w")
        binary = load_testbed().prometheus_binary("prometheus")
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {Path(self.log.name).read_text()}")

    def set_targets(self, targets: dict[str, dict[str, str]]) -> None:
        """`{"127.0.0.1:PORT": {label: value}}`, written atomically (Prometheus watches the file)."""
        self._targets = dict(targets)
        groups = [{"targets": [address], "labels": labels} for address, labels in self._targets.items()]
        scratch = self.targets_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(groups))
        scratch.replace(self.targets_file)

    def add_target(self, address: str, **labels: str) -> None:
        self.set_targets({**self._targets, address: labels})

    def remove_target(self, address: str) -> None:
        self.set_targets({k: v for k, v in self._targets.items() if k != address})

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:  # 400: a query that does not parse; say why
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def scraped_up(self, address: str) -> bool:
        """The target has been scraped successfully at least once."""
        for target in self.api("targets")["activeTargets"]:
            if target["labels"].get("instance") == address and target["health"] == "up":
                return True
        return False

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[Any]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        result: list[Any] = data["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
