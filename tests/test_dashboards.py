"""The Grafana dashboards: generated from code, committed into the chart without drift, valid for
the SDK's own models, laid out and wired to the `${datasource}` variable, and every query parses.
Whether every query returns data from the real operator and servers is checked at the end of
tests/test_operator_cluster.py (`test_every_dashboard_query_returns_series_during_a_promotion`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from promoter.observability.dashboards import DASHBOARDS, render

from .kube import load_testbed
from .prometheus import DASHBOARDS as COMMITTED
from .prometheus import PanelQuery, all_panels, dashboard_queries

REGENERATE = "python -m promoter.observability.dashboards charts/promoter/dashboards"


def _committed(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((COMMITTED / name).read_text())
    return document


def test_the_committed_dashboards_are_a_fresh_render() -> None:
    assert sorted(p.name for p in COMMITTED.glob("*.json")) == sorted(DASHBOARDS)
    for name, build in DASHBOARDS.items():
        assert (COMMITTED / name).read_text() == render(build()), f"{name} is stale: run {REGENERATE}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_a_dashboard_round_trips_through_the_sdk_models(name: str) -> None:
    document = _committed(name)
    parsed = model.Dashboard.from_json(document)
    assert json.loads(json.dumps(parsed, cls=JSONEncoder)) == document
    assert parsed.schema_version == 41  # Grafana 11.6's classic schema (the pinned SDK's target)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_are_placed_numbered_and_read_the_datasource_variable(name: str) -> None:
    document = _committed(name)
    variables = document["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= variables[0].items()
    panels = list(all_panels(document["panels"]))
    assert len({p["id"] for p in panels}) == len(panels) and all(p["id"] > 0 for p in panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and all(ref_ids) and len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def _promtool_parses(queries: list[PanelQuery], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Each query as a recording rule: `promtool check rules` parses them without a server
    (Debian's 2.42 promtool has no `promql` subcommand)."""
    rules = [{"record": f"dashboard:query:{i}", "expr": q.promql} for i, q in enumerate(queries)]
    path = tmp_path / "queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    promtool = load_testbed().prometheus_binary("promtool")
    return subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_query_parses(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25
    checked = _promtool_parses(queries, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_parse_check_catches_a_broken_query(tmp_path: Path) -> None:
    broken = PanelQuery("x.json", "broken", "A", "sum(rate(promoter_predictions_total[$__rate_interval])")
    checked = _promtool_parses([broken], tmp_path)
    assert checked.returncode != 0 and "unclosed left parenthesis" in checked.stdout + checked.stderr


def test_the_command_writes_the_three_dashboards(tmp_path: Path) -> None:
    target = tmp_path / "out"
    written = subprocess.run(
        [sys.executable, "-m", "promoter.observability.dashboards", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in target.iterdir()) == ["operator.json", "promotions.json", "serving.json"]
    assert (target / "serving.json").read_text() == (COMMITTED / "serving.json").read_text()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [([], "the following arguments are required: DIR"), (["FILE"], "DIR: ")],
)
def test_a_bad_directory_is_exit_2_naming_it(tmp_path: Path, arguments: list[str], message: str) -> None:
    (tmp_path / "FILE").write_text("not a directory")
    refused = subprocess.run(
        [sys.executable, "-m", "promoter.observability.dashboards", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert message in refused.stderr
