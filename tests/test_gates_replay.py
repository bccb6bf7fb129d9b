"""`promoter gates replay`: a new gate definition judged on the gate reports past evaluations left in
a real MLflow store, as `promoter.pipelines.evaluate` records them (a run of the model's experiment,
tagged `gate.decision`, holding `gate_report.json`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from promoter.cli import app
from promoter.pipelines.tracking import configure_tracking, experiment_id
from promoter.promotion.gates import (
    GateReport,
    ModelEvidence,
    PairedCounts,
    PairedEvidence,
    SetEvidence,
    evaluate_gates,
)
from promoter.promotion.names import GATE_DECISION_TAG, GATE_REPORT_ARTIFACT, PROMOTION_TAG
from promoter.promotion.spec import Gates

from .conftest import EXAMPLES, write_spec

runner = CliRunner()

DIGITS = tuple(str(digit) for digit in range(10))
# The definition in force when the reports were written: an accuracy floor and a per-class F1 floor.
OLD_GATES = Gates.model_validate({"absolute": {"accuracy": 0.9}, "perClass": {"f1": 0.8}})
# The one being trialled: a higher floor, no per-class F1 floor, and per-class recall against the champion.
STRICTER = """\
  gates:
    absolute: {accuracy: 0.95}
    paired: {margin: 0.1, confidence: 0.95, minRows: 20}
"""
AGREE = PairedCounts(a=35, b=0, c=0, d=1)  # 36 rows, no disagreement: paired lower bound -0.079
WORSE_ON_3 = PairedCounts(a=28, b=5, c=1, d=2)  # 5 lost, 1 gained: bound -0.237, McNemar p 0.11


def spec_with(tmp_path: Path, gates: str) -> Path:
    """The example digits promotion with `gates` in place of its own."""
    example = (EXAMPLES / "digits" / "promotion.yaml").read_text()
    start, end = example.index("  gates:"), example.index("  rollout:")
    return write_spec(tmp_path / "stricter.yaml", example[:start] + gates + example[end:])


def report(
    promotion: str,
    accuracy: float,
    *,
    f1: float = 0.95,
    champion: str | None = "1",
    paired: dict[str, PairedCounts] | None = None,
    latency: tuple[dict[str, float], dict[str, float]] = ({}, {}),
    judged_by: Gates = OLD_GATES,
) -> GateReport:
    """A report as the evaluation writes one, judged by `judged_by` on its own evidence; `latency`:
    the candidate's and the champion's latency metrics."""
    candidate = {"accuracy": accuracy} | {f"class/{k}/f1": f1 for k in DIGITS} | latency[0]
    champion_metrics = (
        {"accuracy": 0.96} | {f"class/{k}/f1": 0.95 for k in DIGITS} | latency[1] if champion else None
    )
    per_class = dict.fromkeys(DIGITS, AGREE) | (paired or {})
    evidence = SetEvidence(
        data_version="v1",
        data_sha256="a" * 64,
        samples=360,
        class_names=DIGITS,
        candidate=candidate,
        champion=champion_metrics,
        paired=PairedEvidence(overall=AGREE, per_class=per_class) if champion else None,
    )
    return GateReport(
        model="digits",
        promotion=promotion,
        data_version="v1",
        data_sha256="a" * 64,
        split="test",
        samples=360,
        candidate=ModelEvidence(run_id="c" * 32, metrics=candidate),
        champion=ModelEvidence(run_id="d" * 32, version=champion, metrics=champion_metrics)
        if champion and champion_metrics
        else None,
        class_names=DIGITS,
        paired=evidence.paired,
        gates=evaluate_gates(judged_by, evidence),
    )


@dataclass(frozen=True)
class Store:
    workdir: Path
    client: MlflowClient
    experiment: str

    def record(self, started: str, body: GateReport | dict[str, Any] | str, decision: str = "") -> str:
        """A run started at `started` (UTC) holding `body` as its gate report, tagged as evaluate tags it."""
        if isinstance(body, GateReport):
            text, decision = body.to_json(), body.decision
        else:
            text = body if isinstance(body, str) else json.dumps(body)
        at = datetime.fromisoformat(started).replace(tzinfo=UTC)
        run = self.client.create_run(
            self.experiment,
            start_time=int(at.timestamp() * 1000),
            tags={PROMOTION_TAG: f"digits-{started[:10]}", GATE_DECISION_TAG: decision},
        )
        run_id: str = run.info.run_id
        self.client.log_text(run_id, text, GATE_REPORT_ARTIFACT)
        self.client.set_terminated(run_id)
        return run_id


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store whose schema exists: creating one costs seconds of fsyncs, a copy nothing."""
    workdir = tmp_path_factory.mktemp("empty-store")
    configure_tracking(workdir)
    return workdir / "mlflow.db"


@pytest.fixture
def store(tmp_path: Path, empty_store: Path) -> Store:
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copyfile(empty_store, workdir / "mlflow.db")
    client = configure_tracking(workdir)
    experiment = experiment_id(client, "digits", workdir)
    client.create_run(experiment, tags={PROMOTION_TAG: "a training run with no report"})
    return Store(workdir, client, experiment)


@dataclass(frozen=True)
class History:
    passes: str  # passed then, passes now
    blocked: str  # passed then, the higher floor fails it
    awaiting: str  # passed then, class 3's paired recall is inconclusive
    unblocked: str  # failed the per-class F1 floor the new definition drops


@pytest.fixture
def history(store: Store) -> History:
    return History(
        passes=store.record("2026-11-01T10:00:00", report("digits-a", 0.97)),
        blocked=store.record("2026-11-05T10:00:00", report("digits-b", 0.93)),
        awaiting=store.record("2026-11-10T10:00:00", report("digits-c", 0.97, paired={"3": WORSE_ON_3})),
        unblocked=store.record("2026-11-15T10:00:00", report("digits-d", 0.97, f1=0.7)),
    )


def replay(spec: Path, store: Store, *args: str) -> Any:
    return runner.invoke(app, ["gates", "replay", str(spec), "--workdir", str(store.workdir), *args])


def row(output: str, run_id: str) -> str:
    [line] = [line for line in output.splitlines() if run_id[:12] in line]
    return line


def test_a_stricter_definition_flags_exactly_the_runs_it_would_block(
    store: Store, history: History, tmp_path: Path
) -> None:
    result = replay(spec_with(tmp_path, STRICTER), store)

    assert result.exit_code == 0, result.output
    assert (
        "4 gate reports since 2026-11-01 10:00 UTC: 1 that passed would now be blocked (fail), "
        "1 would need approval (inconclusive), 1 that failed would now pass"
    ) in result.stdout
    lines = result.stdout.splitlines()
    order = [next(i for i, line in enumerate(lines) if run[:12] in line) for run in astuple(history)]
    assert order == sorted(order, reverse=True)  # newest first

    blocked = row(result.stdout, history.blocked)
    assert "digits-b" in blocked and "v1" in blocked
    assert "pass" in blocked and "absolute.accuracy fail 0.93" in blocked
    assert "paired.recall[3] inconclusive -0.237 (new)" in row(result.stdout, history.awaiting)
    assert "perClass.f1[0] dropped (was fail)" in row(result.stdout, history.unblocked)
    # new gates that pass are counted, not listed: each report's cell ends with the count
    assert result.stdout.count("10 new gates pass") == 3 and result.stdout.count("9 new gates pass") == 1
    assert "Traceback" not in result.output


def test_since_keeps_only_the_reports_of_evaluations_started_from_then(
    store: Store, history: History, tmp_path: Path
) -> None:
    spec = spec_with(tmp_path, STRICTER)

    by_date = replay(spec, store, "--since", "2026-11-06")
    by_moment = replay(spec, store, "--since", "2026-11-10T11:00:00+01:00", "--json")  # 10:00 UTC: included

    assert by_date.exit_code == 0, by_date.output
    assert (
        "2 gate reports since 2026-11-06: 0 that passed would now be blocked (fail), "
        "1 would need approval (inconclusive), 1 that failed would now pass"
    ) in by_date.stdout
    assert history.passes[:12] not in by_date.stdout and history.blocked[:12] not in by_date.stdout
    assert [entry["run_id"] for entry in json.loads(by_moment.stdout)] == [
        history.unblocked,
        history.awaiting,
    ]


def test_an_old_report_without_paired_outcomes_replays_with_the_paired_gate_skipped(
    store: Store, tmp_path: Path
) -> None:
    # as the first release wrote reports: no classes, paired outcomes, evaluation sets or reproduction
    old = json.loads(report("digits-old", 0.97).to_json())
    for newer in ("class_names", "paired", "datasets", "reproduction"):
        del old[newer]
    for gate in old["gates"]:
        del gate["statistics"], gate["comparison"]
    run_id = store.record("2026-10-01T08:00:00", old, decision="pass")

    result = replay(spec_with(tmp_path, STRICTER), store, "--json")

    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["run_id"] == run_id and entry["error"] is None
    assert (entry["then"], entry["now"]) == ("pass", "pass")
    paired = next(gate for gate in entry["results"] if gate["name"] == "paired.recall")
    assert paired["verdict"] == "skipped" and paired["detail"] == "paired outcomes were not recorded"
    assert [change["gate"]["name"] for change in entry["changed"]] == ["paired.recall"]


def test_json_is_one_object_per_report_with_both_decisions_and_the_changes(
    store: Store, history: History, tmp_path: Path
) -> None:
    result = replay(spec_with(tmp_path, STRICTER), store, "--json")

    assert result.exit_code == 0, result.output
    entries = {entry["run_id"]: entry for entry in json.loads(result.stdout)}
    assert {run: (e["then"], e["now"]) for run, e in entries.items()} == {
        history.passes: ("pass", "pass"),
        history.blocked: ("pass", "fail"),
        history.awaiting: ("pass", "inconclusive"),
        history.unblocked: ("fail", "pass"),
    }
    blocked = entries[history.blocked]
    assert blocked["promotion"] == "digits-b" and blocked["champion_version"] == "1"
    assert datetime.fromisoformat(blocked["started"]) == datetime(2026, 11, 5, 10, tzinfo=UTC)
    [accuracy] = [c for c in blocked["changed"] if c["gate"]["name"] == "absolute.accuracy"]
    assert accuracy["was"]["verdict"] == "pass" and accuracy["gate"]["verdict"] == "fail"
    assert accuracy["gate"]["threshold"] == 0.95
    assert {gate["name"] for gate in entries[history.unblocked]["dropped"]} == {
        f"perClass.f1[{k}]" for k in DIGITS
    }


def test_the_same_definition_changes_nothing(store: Store, history: History, tmp_path: Path) -> None:
    same = "  gates:\n    absolute: {accuracy: 0.9}\n    perClass: {f1: 0.8}\n"

    result = replay(spec_with(tmp_path, same), store, "--json")

    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert len(entries) == 4
    assert all(e["changed"] == [] and e["dropped"] == [] and e["then"] == e["now"] for e in entries)


def test_a_report_that_cannot_be_read_is_listed_not_dropped(
    store: Store, history: History, tmp_path: Path
) -> None:
    broken = store.record("2026-11-20T09:00:00", '{"model": "digits"}', decision="pass")

    result = replay(spec_with(tmp_path, STRICTER), store)

    assert result.exit_code == 0, result.output
    line = row(result.stdout, broken)
    assert "unreadable" in line and "gate_report.json is not a gate report" in line
    assert "5 gate reports since 2026-11-01 10:00 UTC" in result.stdout
    assert result.stdout.rstrip().endswith("; 1 could not be read")


def test_a_bad_since_is_refused_naming_the_option(store: Store, tmp_path: Path) -> None:
    result = replay(spec_with(tmp_path, STRICTER), store, "--since", "last tuesday")

    assert result.exit_code == 2
    assert "--since" in result.output and "'last tuesday' is not an ISO 8601 date" in result.output


def test_a_bad_spec_is_refused_naming_the_field(store: Store, tmp_path: Path) -> None:
    bad = spec_with(tmp_path, "  gates:\n    paired: {margin: 2}\n")

    result = replay(bad, store)

    assert result.exit_code == 2
    assert "spec.gates.paired.margin" in result.stderr


def test_a_model_without_gate_reports_has_nothing_to_replay(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"

    result = runner.invoke(
        app, ["gates", "replay", str(spec_with(tmp_path, STRICTER)), "--workdir", str(nowhere)]
    )
    as_json = runner.invoke(
        app, ["gates", "replay", str(spec_with(tmp_path, STRICTER)), "--workdir", str(nowhere), "--json"]
    )

    assert result.exit_code == 0 and as_json.exit_code == 0
    assert "no gate reports of digits at sqlite:///" in result.stdout
    assert json.loads(as_json.stdout) == [] and "no gate reports" in as_json.stderr
    assert not nowhere.exists()  # a read-only report creates no store to find that out


def test_a_gate_trialled_as_advisory_shows_what_enforcing_it_would_block(
    store: Store, tmp_path: Path
) -> None:
    """The way in for a new gate: advisory first (reported, never blocking), then replayed enforced."""
    trial = Gates.model_validate({"absolute": {"accuracy": {"min": 0.98, "enforce": False}}})
    trialled = report("digits-e", 0.97, judged_by=trial)
    assert [(g.verdict, g.enforced) for g in trialled.gates] == [("fail", False)]
    assert trialled.decision == "pass"
    run_id = store.record("2026-11-21T10:00:00", trialled)

    result = replay(spec_with(tmp_path, "  gates:\n    absolute: {accuracy: 0.98}\n"), store)

    assert result.exit_code == 0, result.output
    assert "absolute.accuracy fail 0.97 (was advisory)" in row(result.stdout, run_id)
    assert ": 1 that passed would now be blocked (fail)," in result.stdout


def test_latency_gates_replay_on_the_latencies_a_report_recorded(store: Store, tmp_path: Path) -> None:
    candidate = {"latency/batch1/p50_ms": 1.0, "latency/batch32/p50_ms": 2.31}
    champion = {"latency/batch1/p50_ms": 1.0, "latency/batch32/p50_ms": 1.0}
    run_id = store.record("2026-11-22T10:00:00", report("digits-f", 0.97, latency=(candidate, champion)))

    result = replay(spec_with(tmp_path, "  gates:\n    latency: {batchSize: 32, maxRatio: 1.2}\n"), store)

    assert result.exit_code == 0, result.output
    line = row(result.stdout, run_id)
    assert "latency.p50Ratio[batch32] fail 2.31 (new)" in line  # the name whole: `[batch32]` is no markup
    assert "1 new gate pass" in result.stdout  # batch 1: 1.0 against 1.0
