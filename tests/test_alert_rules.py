"""The alert and recording rules (charts/promoter/rules/promoter.rules.yaml), checked by promtool.

The rule file is the one source: the chart's PrometheusRule wraps its `groups`, and a Prometheus
outside Kubernetes loads it with `rule_files:`. promtool (Debian's prometheus 2.42, from the test bed
cache) checks its syntax and runs the unit tests in tests/prometheus_rules/, where every alert fires
on a series that should page or open a ticket and stays quiet on one that should not. The checks
here cover what promtool cannot see: that every metric a rule reads is one promoter exports, that
the latency threshold is a bucket boundary the server writes, that every alert has its runbook; and,
with a real `promoter serve` scraped by a real Prometheus (the same Debian package) loading the rule
file, that the rules read the labels the server really writes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from promoter.local.rollout import free_port
from promoter.operator import metrics as operator_metrics
from promoter.pipelines.digits import load_digits_v1
from promoter.serving import metrics as serving_metrics
from tests.conftest import Server
from tests.kube import REPO, load_testbed

RULES = REPO / "charts" / "promoter" / "rules" / "promoter.rules.yaml"
UNIT_TESTS = sorted((REPO / "tests" / "prometheus_rules").glob("*.yaml"))
README = REPO / "README.md"
RUNBOOKS = "https://github.com/promoter/promoter/blob/main/README.md#"
SEVERITIES = {"critical", "warning", "info"}

# Series Prometheus writes itself, for every target.
PROMETHEUS_SERIES = {"up"}

# The server's routes, as the `endpoint` label names them (the route template, "unmatched" for 404s).
INFERENCE_ENDPOINTS = ["/predict", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
OTHER_ENDPOINTS = [
    "/metadata",
    "/metrics",
    "/healthz",
    "/readyz",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}",
    "unmatched",
]


@pytest.fixture(scope="module")
def promtool() -> Path:
    """Debian's promtool from the test bed cache (fetched by the build: no skip when it is missing)."""
    bed = load_testbed()
    bed.build()
    binary: Path = bed.prometheus_binary("promtool")
    return binary


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_rule_file_is_a_plain_prometheus_rule_file(promtool: Path) -> None:
    """Only `groups:` (no PrometheusRule around it), valid for promtool, every rule counted."""
    assert list(yaml.safe_load(RULES.read_text())) == ["groups"]
    checked = _promtool(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    assert len(UNIT_TESTS) >= 4
    tested = _promtool(promtool, "test", "rules", *map(str, UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_a_wrong_expectation_fails(promtool: Path, tmp_path: Path) -> None:
    """The unit tests can fail: expecting PromoterServingNotReady a minute before its `for: 10m`
    has passed is an error promtool reports with what it expected and what it got."""
    source = REPO / "tests" / "prometheus_rules" / "serving_alerts.yaml"
    document = yaml.safe_load(source.read_text())
    document["rule_files"] = [str(RULES)]
    readiness = next(
        test
        for test in document["tests"]
        if any(case["alertname"] == "PromoterServingNotReady" for case in test["alert_rule_test"])
    )
    firing = next(case for case in readiness["alert_rule_test"] if case["exp_alerts"])
    assert firing["eval_time"] == "10m"
    firing["eval_time"] = "9m"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(document))

    tested = _promtool(promtool, "test", "rules", str(wrong))

    output = tested.stdout + tested.stderr
    assert tested.returncode == 1, output
    assert "FAILED" in output
    assert "alertname: PromoterServingNotReady, time: 9m" in output
    assert "got:[]" in re.sub(r"\s", "", output)


def test_every_alert_is_shown_firing_and_quiet() -> None:
    """Each alert has a unit test where it fires and one where it stays quiet."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case["exp_alerts"] else quiet).add(case["alertname"])
            for case in test.get("promql_expr_test", []):
                for sample in case["exp_samples"]:
                    if match := re.match(r'ALERTS\{alertname="(\w+)", alertstate="firing"', sample["labels"]):
                        fires.add(match.group(1))
    names = {alert["alert"] for alert in _alerts()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def _github_anchors(markdown: str) -> set[str]:
    """The ids GitHub gives headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", markdown):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alert_says_what_and_links_its_runbook() -> None:
    anchors = _github_anchors(README.read_text())
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert "$labels" in annotations["summary"] + annotations["description"] or "absent(" in alert["expr"]
        assert "$value" in annotations["description"], name
        assert annotations["runbook_url"].startswith(RUNBOOKS), name
        anchor = annotations["runbook_url"].removeprefix(RUNBOOKS)
        assert anchor == name.lower(), name
        assert anchor in anchors, f"README has no heading for {name}'s runbook"


def _registered_names() -> set[str]:
    """Every series name the project's metrics produce, suffixes included as prometheus_client adds them."""
    suffixes = {
        "counter": ["_total", "_created"],
        "gauge": [""],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "summary": ["_count", "_sum", "_created"],
    }
    names: set[str] = set()
    for module in (serving_metrics, operator_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def _referenced_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels or numbers)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)  # matchers, ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w:])\d[\w.]*", "", text)  # numbers and durations
    keywords = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
    return {
        match.group()
        for match in re.finditer(r"[A-Za-z_:][\w:]*", text)
        if match.group().lower() not in keywords and not text[match.end() :].lstrip().startswith("(")
    }


def test_referenced_names_finds_metrics_only() -> None:
    expr = (
        'sum by (namespace) (increase(a_total{outcome="Failed"}[15m]) > 0 or (b unless b offset 15m))'
        " > 14.4 * scalar(ns:c:ratio_rate5m) and on (job) present_over_time(d[1d])"
    )
    assert _referenced_names(expr) == {"a_total", "b", "ns:c:ratio_rate5m", "d"}


def test_rules_read_only_metrics_promoter_exports() -> None:
    rules = _rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    allowed = _registered_names() | PROMETHEUS_SERIES | recorded
    read = set().union(*(_referenced_names(rule["expr"]) for rule in rules))
    assert {"promoter_request_duration_seconds_bucket", "promoter_predictions_total"} <= read
    assert read - allowed == set()


def _matchers(label: str) -> set[str]:
    return {value for rule in _rules() for value in re.findall(rf'\b{label}=~?"([^"]*)"', str(rule["expr"]))}


def test_the_latency_threshold_is_one_bucket_boundary_of_the_server() -> None:
    """All latency rules use the same `le`, written as prometheus_client writes that bucket's label."""
    thresholds = _matchers("le")
    assert len(thresholds) == 1, thresholds
    written = {floatToGoString(bound) for bound in serving_metrics.LATENCY_BUCKETS}  # type: ignore[no-untyped-call]
    assert thresholds <= written


def test_the_slos_count_the_inference_endpoints_only() -> None:
    """The `endpoint` matcher takes the inference routes (RE2, anchored: Python's fullmatch agrees)."""
    patterns = _matchers("endpoint")
    assert len(patterns) == 1, patterns
    pattern = re.compile(patterns.pop())
    assert [e for e in INFERENCE_ENDPOINTS if not pattern.fullmatch(e)] == []
    assert [e for e in OTHER_ENDPOINTS if pattern.fullmatch(e)] == []


class _RulesPrometheus:
    """A real Prometheus on loopback that scrapes one inference server every second, labelled as the
    chart's ServiceMonitor labels it, and evaluates the rule file every second."""

    def __init__(self, directory: Path, target: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "digits-active",
                    "static_configs": [
                        {"targets": [target], "labels": {"namespace": "ml", "service": "digits-active"}}
                    ],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                str(load_testbed().prometheus_binary("prometheus")),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=5) as answer:
            result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The query's first non-empty answer (Prometheus starting up counts as empty)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                if result := self.query(promql):
                    return result
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"no answer to {promql} after {timeout}s: {Path(self.log.name).read_text()[-3000:]}"
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


@pytest.fixture
def served_and_scraped(registered_digits: Path, tmp_path: Path) -> Iterator[tuple[Server, _RulesPrometheus]]:
    server = Server(registered_digits, "--model-uri", "models:/digits@champion")
    try:
        server.wait_ready()
        prometheus = _RulesPrometheus(tmp_path, f"127.0.0.1:{server.port}")
        try:
            yield server, prometheus
        finally:
            prometheus.stop()
    finally:
        server.stop()


@pytest.mark.slow
def test_the_rules_read_what_a_real_server_exports(
    served_and_scraped: tuple[Server, _RulesPrometheus],
    promtool: Path,  # fetched with Debian's prometheus package, which the test runs
) -> None:
    """Against a real `promoter serve` scraped by a real Prometheus: the SLO ratios exist with the
    server's real `endpoint`, `status` and `le` labels (0 errors: 4xx and /metadata do not count), a
    healthy server trips no alert (only PromoterOperatorAbsent: no operator here), and a server that
    stops answering its scrapes makes PromoterServerDown pending."""
    server, prometheus = served_and_scraped
    inputs = load_digits_v1().features[:8].tolist()

    def traffic() -> None:
        for _ in range(10):
            assert server.client.post("/predict", json={"inputs": inputs}).status_code == 200
            assert 400 <= server.client.post("/predict", json={"inputs": "no"}).status_code < 500
            assert server.client.get("/metadata").status_code == 200

    # A status's series appears at its first request, already counting it: rate() needs a second
    # round after Prometheus has seen the series, or the ratio is 0/0.
    traffic()
    prometheus.wait_for('promoter_request_duration_seconds_count{endpoint="/predict", status="422"}')
    traffic()
    errors = prometheus.wait_for('promoter:inference_errors:ratio_rate5m{service="digits-active"} >= 0')
    (error,) = errors
    assert error["metric"] == {
        "__name__": "promoter:inference_errors:ratio_rate5m",
        "namespace": "ml",
        "service": "digits-active",
    }
    assert error["value"][1] == "0"
    # a number, not absent: `le="0.1"` names a bucket the server really writes
    (slow,) = prometheus.wait_for("promoter:inference_slow_requests:ratio_rate5m >= 0")
    assert 0 <= float(slow["value"][1]) <= 1
    assert prometheus.query("promoter:slo_objective:inference_availability")[0]["value"][1] == "0.999"
    prometheus.wait_for('ALERTS{alertname="PromoterOperatorAbsent"}')
    active = {alert["metric"]["alertname"] for alert in prometheus.query("ALERTS")}
    assert active == {"PromoterOperatorAbsent"}

    assert server.stop()
    down = prometheus.wait_for('ALERTS{alertname="PromoterServerDown", alertstate="pending"}')
    assert down[0]["metric"]["job"] == "digits-active"
    assert down[0]["metric"]["instance"] == f"127.0.0.1:{server.port}"
