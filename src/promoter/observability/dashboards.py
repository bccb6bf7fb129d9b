"""Grafana dashboards as code: Promotions, Serving and Operator.

`python -m promoter.observability.dashboards DIR` writes `promotions.json`, `serving.json` and
`operator.json` (classic dashboard JSON, schemaVersion 41). The chart ships them from
`charts/promoter/dashboards/` as ConfigMaps for Grafana's dashboard sidecar; outside a cluster,
point a file provisioning provider at the directory. A test fails when the committed files differ
from a fresh render, and a live test runs every query against a real Prometheus scraping a real
operator and real inference servers.

Built with grafana-foundation-sdk, pinned exactly (`==1769699379!11.6.0`): its versions are
`<epoch>!<Grafana version>`, so an unpinned install takes the highest epoch (a Grafana 10.1 build,
schemaVersion 36) and a range such as `>=11.6,<12` has no solution. The builders leave `refId` empty
and set no size: both are set here. Every panel reads the `${datasource}` variable, never a fixed
uid, so the dashboards work against whichever Prometheus a Grafana has.

Query conventions:
- rates use `$__rate_interval` (at least four scrape intervals, as Grafana computes it);
- rare events (transitions, gate failures, rollbacks) are counted over fixed windows (`[1h]`), so a
  panel shows a step rather than a spike too thin to see;
- ratios are written so that "nothing bad happened" is 0, not an empty panel: the error ratio is
  `1 - ok / all` (a 5xx-only numerator has no series until the first 5xx);
- serving series are per scraped Service (`service`: `<model>-active`, `<model>-preview`; the
  chart's ServiceMonitor adds it), and `promoter_model_info` is joined on the scrape target
  (`job`, `instance`) for per-version latency.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
INFERENCE = 'endpoint=~"/predict|/v2/models/.*/infer"'
REF_IDS = "ABCDEFGHIJ"
HEIGHT, HALF, THIRD, FULL = 8, 12, 8, 24

Query = tuple[str, str]  # (PromQL, legend)
PanelBuilder = timeseries.Panel | bargauge.Panel


def _panel(
    panel: PanelBuilder, title: str, description: str, unit: str, queries: tuple[Query, ...], width: int
) -> None:
    """What every panel has: its text, unit, the `${datasource}` variable, a size (the builders set
    none) and one target per query with its refId (the builders leave it empty)."""
    panel.title(title).description(description).unit(unit).datasource(DATASOURCE).height(HEIGHT).span(width)
    instant = isinstance(panel, bargauge.Panel)  # a bar shows the value now, not a range
    for ref_id, (expr, legend) in zip(REF_IDS, queries, strict=False):
        target = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)
        panel.with_target((target.instant() if instant else target).datasource(DATASOURCE))


def graph(title: str, description: str, unit: str, *queries: Query, width: int = HALF) -> timeseries.Panel:
    panel = timeseries.Panel()
    _panel(panel, title, description, unit, queries, width)
    return panel


def bars(title: str, description: str, unit: str, *queries: Query, width: int = HALF) -> bargauge.Panel:
    """The current value of each series (instant queries): how many there are now."""
    panel = bargauge.Panel()
    _panel(panel, title, description, unit, queries, width)
    return panel


def quantiles(
    histogram: str,
    by: str = "",
    window: str = RATE,
    what: str = "",
    levels: tuple[float, ...] = (0.5, 0.95, 0.99),
) -> tuple[Query, ...]:
    """Quantiles of a histogram, per `by` label if given (the `le` is added here)."""
    buckets = f"sum by (le{', ' + by if by else ''}) (rate({histogram}_bucket[{window}]))"
    legend = " ".join(part for part in (f"{{{{{by}}}}}" if by else "", what) if part)
    return tuple(
        (f"histogram_quantile({q}, {buckets})", f"{legend} p{round(q * 100)}".strip()) for q in levels
    )


def _board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["promoter"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )


def promotions() -> dashboard.Dashboard:
    """What promotions do: where they are, how they end, what stops them, how long they take."""
    finished = "promoter_promotions_finished_total"
    return (
        _board(
            "promoter-promotions",
            "Promoter: Promotions",
            "ModelPromotions by phase and outcome, phase durations, gate failures, rejections, "
            "rollbacks and time to promote (operator metrics).",
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            bars(
                "Promotions by phase",
                "ModelPromotions in each phase now, as the operator's watch sees them.",
                "none",
                ("max by (phase) (promoter_promotions)", "{{phase}}"),
            )
        )
        .with_panel(
            bars(
                "Finished in the last 24 h, by outcome",
                "Promotions that reached Promoted, Rejected, Failed or RolledBack.",
                "none",
                (f"sum by (outcome) (increase({finished}[24h]))", "{{outcome}}"),
            )
        )
        .with_row(dashboard.Row("Flow"))
        .with_panel(
            graph(
                "Phases entered (per hour)",
                "Transitions into each phase over the previous hour.",
                "none",
                ("sum by (phase) (increase(promoter_promotion_transitions_total[1h]))", "{{phase}}"),
            )
        )
        .with_panel(
            graph(
                "Time spent in each phase (p95)",
                "Wall time in a phase, observed when a promotion leaves it; 95th percentile over 1 h.",
                "s",
                (
                    "histogram_quantile(0.95, sum by (le, phase) "
                    "(rate(promoter_phase_duration_seconds_bucket[1h])))",
                    "{{phase}}",
                ),
            )
        )
        .with_row(dashboard.Row("What stops candidates"))
        .with_panel(
            graph(
                "Gate failures by gate (per hour)",
                "Gates that failed in finished promotions; enforced=false: advisory, reported only. "
                "Per-class gates are counted once per rule (the class is in the promotion's status).",
                "none",
                (
                    "sum by (gate, enforced) (increase(promoter_gate_failures_total[1h]))",
                    "{{gate}} (enforced={{enforced}})",
                ),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "Rejections, failures and rollbacks (per hour)",
                "Rejected: a gate blocked the candidate. Failed: something broke (a crashed load test, "
                "a failed workflow). Rolled back: production returned to the previous champion.",
                "none",
                (f'sum(increase({finished}{{outcome="Rejected"}}[1h]))', "rejected"),
                (f'sum(increase({finished}{{outcome="Failed"}}[1h]))', "failed"),
                ("sum by (model) (increase(promoter_rollbacks_total[1h]))", "rolled back: {{model}}"),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "Time to promote",
                "From a ModelPromotion's creation to Promoted, over the previous 24 h.",
                "s",
                *quantiles("promoter_time_to_promote_seconds", window="24h"),
                width=THIRD,
            )
        )
    )


def serving() -> dashboard.Dashboard:
    """What the inference servers answer, how fast, and what they are asked."""
    requests = f"promoter_request_duration_seconds_count{{{INFERENCE}}}"
    not_5xx = f'promoter_request_duration_seconds_count{{{INFERENCE}, status!~"5.."}}'
    per_version = (
        f"sum by (le, version) (rate(promoter_request_duration_seconds_bucket{{{INFERENCE}}}[{RATE}]) "
        "* on (job, instance) group_left (version) max by (job, instance, version) (promoter_model_info))"
    )
    observations = f"sum by (service) (increase(promoter_input_feature_observations_total[{RATE}]))"
    mean = (
        f"((sum by (service, feature) (increase(promoter_input_feature_positive_sum_total[{RATE}])) "
        f"- sum by (service, feature) (increase(promoter_input_feature_negative_sum_total[{RATE}]))) "
        f"/ ignoring (feature) group_left {observations})"
    )
    second_moment = (
        f"(sum by (service, feature) (increase(promoter_input_feature_sum_squares_total[{RATE}])) "
        f"/ ignoring (feature) group_left {observations})"
    )
    predictions = f"rate(promoter_predictions_total[{RATE}])"
    return (
        _board(
            "promoter-serving",
            "Promoter: Serving",
            "The inference servers behind each model's active and preview Services: traffic, latency "
            "by model version, errors, batching, confidence, class shares and input statistics.",
        )
        .with_row(dashboard.Row("Traffic"))
        .with_panel(
            graph(
                "Requests/s by service",
                "Inference requests (/predict and V2 infer) per second, per Service.",
                "reqps",
                (f"sum by (namespace, service) (rate({requests}[{RATE}]))", "{{service}}"),
            )
        )
        .with_panel(
            graph(
                "Latency by model version",
                "Inference request latency, p50/p95/p99, per model version (joined from "
                "promoter_model_info on the scrape target).",
                "s",
                *(
                    (f"histogram_quantile({q}, {per_version})", f"v{{{{version}}}} p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ),
            )
        )
        .with_panel(
            graph(
                "Error ratio (5xx)",
                "Share of inference requests answered with a 5xx, per Service (4xx are the "
                "client's mistakes and not counted).",
                "percentunit",
                (
                    f"1 - sum by (service) (rate({not_5xx}[{RATE}])) "
                    f"/ sum by (service) (rate({requests}[{RATE}]))",
                    "{{service}}",
                ),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "In flight",
                "Requests being handled now, per Service.",
                "none",
                ("sum by (service) (promoter_requests_in_flight)", "{{service}}"),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "Ready servers",
                "Servers that have loaded and warmed up their model, per Service and version.",
                "none",
                (
                    "sum by (service, version) (promoter_ready * on (job, instance) group_left (version) "
                    "max by (job, instance, version) (promoter_model_info))",
                    "{{service}} v{{version}}",
                ),
                width=THIRD,
            )
        )
        .with_row(dashboard.Row("Model"))
        .with_panel(
            graph(
                "Batch sizes",
                "Inputs per request, and per forward pass after micro-batching (p50/p95).",
                "none",
                *quantiles("promoter_request_inputs", "service", what="request", levels=(0.5, 0.95)),
                *quantiles("promoter_forward_batch_size", "service", what="forward", levels=(0.5, 0.95)),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "Low-confidence ratio by model version",
                "Share of predictions whose top probability is under the server's threshold.",
                "percentunit",
                (
                    f"sum by (model_version) (rate(promoter_low_confidence_predictions_total[{RATE}])) "
                    f"/ sum by (model_version) ({predictions})",
                    "v{{model_version}}",
                ),
                width=THIRD,
            )
        )
        .with_panel(
            graph(
                "Class shares by model version",
                "Share of predictions per predicted class: a shift is prediction drift.",
                "percentunit",
                (
                    f"sum by (model_version, class) ({predictions}) "
                    f"/ ignoring (class) group_left sum by (model_version) ({predictions})",
                    "v{{model_version}} {{class}}",
                ),
                width=THIRD,
            )
        )
        .with_row(dashboard.Row("Inputs"))
        .with_panel(
            graph(
                "Input feature mean",
                "Per feature and Service: (sum of positive parts - sum of negative magnitudes) / inputs; "
                "compare with the training reference.",
                "none",
                (mean, "{{service}} f{{feature}}"),
            )
        )
        .with_panel(
            graph(
                "Input feature standard deviation",
                "Per feature and Service: sqrt(E[x^2] - E[x]^2) from the same counters.",
                "none",
                (f"sqrt(clamp_min({second_moment} - {mean} ^ 2, 0))", "{{service}} f{{feature}}"),
            )
        )
    )


def operator() -> dashboard.Dashboard:
    """How the operator itself is doing: its rounds, its errors, how quickly it reacts."""
    return (
        _board(
            "promoter-operator",
            "Promoter: Operator",
            "The promoter operator: reconcile rounds and errors, and the time from a change it "
            "sees to its reaction being saved.",
        )
        .with_row(dashboard.Row("Reconciles"))
        .with_panel(
            graph(
                "Reconcile rounds/s",
                "Observe, decide, save, act: one round per unsettled promotion per interval. Only the "
                "replica that holds the peering acts.",
                "ops",
                (f"sum by (instance) (rate(promoter_reconcile_rounds_total[{RATE}]))", "{{instance}}"),
            )
        )
        .with_panel(
            graph(
                "Reconcile errors/s by error",
                "Rounds that raised, by exception type; they are retried (a 409 after a concurrent "
                "update is normal now and then).",
                "ops",
                (f"sum by (error) (rate(promoter_reconcile_errors_total[{RATE}]))", "{{error}}"),
                (
                    f"sum(rate(promoter_reconcile_errors_total[{RATE}])) "
                    f"/ sum(rate(promoter_reconcile_rounds_total[{RATE}]))",
                    "share of rounds",
                ),
            )
        )
        .with_row(dashboard.Row("Reaction"))
        .with_panel(
            graph(
                "Time from a change to its reaction",
                "From the start of the round that saw a change (a finished workflow, a ready preview, "
                "an approval) to the transition it caused being saved; add up to one reconcile "
                "interval of polling. Over 15 min, p50/p95/p99.",
                "s",
                *quantiles("promoter_reaction_seconds", window="15m"),
                width=FULL,
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "promotions.json": promotions,
    "serving.json": serving,
    "operator.json": operator,
}


def render(builder: dashboard.Dashboard) -> str:
    """Stable JSON (sorted keys), each panel numbered: the builders give every panel id 0, and
    Grafana tells panels (links, `viewPanel=`) apart by id."""
    board = builder.build()
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in DASHBOARDS.items():
        path = directory / name
        path.write_text(render(build()))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m promoter.observability.dashboards",
        description="Write the Grafana dashboards (" + ", ".join(DASHBOARDS) + ") into DIR.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    arguments = parser.parse_args(argv)  # a missing DIR: argparse names it and exits 2
    if arguments.directory.exists() and not arguments.directory.is_dir():
        print(f"DIR: {arguments.directory} exists and is not a directory", file=sys.stderr)
        return 2
    for path in write_all(arguments.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
