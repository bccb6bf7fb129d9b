"""Judge a gate definition on the evidence past promotions kept: what would it have blocked?

Every evaluation records its GateReport, the evidence (both models' metrics, paired outcomes, further
evaluation sets, a reproduction) and the gates judged on it, in a run of the model's experiment
tagged `gate.decision`. Gates are pure functions of that evidence, so a new definition can be judged
on every past report exactly as if it had been in force, before anyone enforces it
(`promoter gates replay`). Nothing is retrained or rescored: evidence a report does not hold (paired
outcomes from before they were recorded, a latency never measured) skips the gate that needs it,
saying so, rather than being guessed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast, get_args

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promoter.pipelines.tracking import configure_tracking, tracking_uri
from promoter.promotion.gates import Decision, GateReport, GateResult, decide_gates, evaluate_gates
from promoter.promotion.names import (
    EVALUATED_VERSION_TAG,
    GATE_CHAMPION_TAG,
    GATE_DECISION_TAG,
    GATE_REPORT_ARTIFACT,
    PROMOTION_TAG,
)
from promoter.promotion.spec import Gates

# Runs asked of the store per request: MLflow's own ceiling for search_runs.
_PAGE = 1000


class ReplayError(RuntimeError):
    """The store itself could not be read (a tracking server down, say): nothing to replay on."""


class GateChange(BaseModel):
    """One gate a reader must look at: judged differently by the new definition than in the report."""

    model_config = ConfigDict(frozen=True)

    gate: GateResult  # as the new definition judges it
    was: GateResult | None  # the report's own result of that name; None: the report had no such gate


class Replayed(BaseModel):
    """One past gate report judged again under another definition.

    `then` is the decision the report recorded, `now` the one the new definition would have taken.
    `changed` holds the results whose verdict or enforcement differs from the report's, or that the
    report did not have (by name); `dropped`, the report's results the new definition no longer has
    (a gate removed: a failure that would now pass may be explained there and nowhere else). A report
    that cannot be read is listed with `error` (and what the run's tags still say), never dropped."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    started: datetime
    promotion: str | None
    candidate_version: str | None
    champion_version: str | None
    then: Decision | None
    now: Decision | None
    results: list[GateResult] = Field(default_factory=list)
    changed: list[GateChange] = Field(default_factory=list)
    dropped: list[GateResult] = Field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Tally:
    """How a definition would have changed past decisions, counted by what a reader asks first."""

    reports: int
    newly_blocked: int  # passed then, fail now
    newly_awaiting: int  # passed then, inconclusive now: a person would have had to approve
    newly_passing: int  # failed then, pass now
    other_changes: int  # any other change of decision (inconclusive -> pass, fail -> inconclusive...)
    unreadable: int

    @classmethod
    def of(cls, replayed: list[Replayed]) -> Tally:
        moves = [(r.then, r.now) for r in replayed if r.error is None]
        counted = {("pass", "fail"), ("pass", "inconclusive"), ("fail", "pass")}
        return cls(
            reports=len(replayed),
            newly_blocked=moves.count(("pass", "fail")),
            newly_awaiting=moves.count(("pass", "inconclusive")),
            newly_passing=moves.count(("fail", "pass")),
            other_changes=sum(1 for then, now in moves if then != now and (then, now) not in counted),
            unreadable=sum(1 for r in replayed if r.error is not None),
        )


def replay_report(
    gates: Gates,
    report: GateReport,
    *,
    run_id: str,
    started: datetime,
    candidate_version: str | None = None,
) -> Replayed:
    """One report judged by `gates`: a pure function of the report's evidence."""
    results = evaluate_gates(
        gates, report.held_out(), datasets=report.datasets, reproduction=report.reproduction
    )
    before = {gate.name: gate for gate in report.gates}
    after = {gate.name for gate in results}
    changed = [
        GateChange(gate=gate, was=before.get(gate.name))
        for gate in results
        if (was := before.get(gate.name)) is None
        or was.verdict != gate.verdict
        or was.enforced != gate.enforced
    ]
    return Replayed(
        run_id=run_id,
        started=started,
        promotion=report.promotion,
        candidate_version=report.candidate.version or candidate_version,
        champion_version=report.champion.version if report.champion else None,
        then=report.decision,
        now=decide_gates(results),
        results=results,
        changed=changed,
        dropped=[gate for gate in report.gates if gate.name not in after],
    )


def replay_gates(
    gates: Gates,
    model: str,
    workdir: Path,
    since: datetime | None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Replayed]:
    """Every gate report of `model`'s experiment (runs tagged GATE_DECISION_TAG) started at or after
    `since` (naive: UTC), newest first, judged by `gates`. `on_progress(done, total)` after each.

    Reads only: a workdir without a store, or a store without the model's experiment, has no gate
    reports (nothing is created to find that out)."""
    uri = tracking_uri(workdir)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    try:
        client = configure_tracking(workdir)
        experiment = client.get_experiment_by_name(model)
        if experiment is None:
            return []
        runs = list(_report_runs(client, str(experiment.experiment_id), since))
        versions = _versions_by_run(client, model)
    except MlflowException as exc:
        raise ReplayError(f"cannot read the gate reports of {model!r} at {uri}: {exc.message}") from None
    replayed = []
    for done, run in enumerate(runs, start=1):
        replayed.append(_replay_run(client, gates, run, versions))
        if on_progress is not None:
            on_progress(done, len(runs))
    return replayed


def _report_runs(client: MlflowClient, experiment: str, since: datetime | None) -> Iterator[Run]:
    clauses = [f"tags.`{GATE_DECISION_TAG}` LIKE '%'"]  # any value: the run holds a gate report
    if since is not None:
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        clauses.append(f"attributes.start_time >= {int(aware.timestamp() * 1000)}")
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=" and ".join(clauses),
            order_by=["attributes.start_time DESC"],
            max_results=_PAGE,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _versions_by_run(client: MlflowClient, model: str) -> dict[str, str]:
    """Which registered version each run became: a trained candidate's report predates its version."""
    try:
        found = client.search_model_versions(f"name = '{model}'")
    except MlflowException:
        return {}  # no registered model yet: no candidate became a version
    return {str(v.run_id): str(v.version) for v in found if v.run_id}


def _replay_run(client: MlflowClient, gates: Gates, run: Run, versions: dict[str, str]) -> Replayed:
    run_id, tags = run.info.run_id, run.data.tags
    started = datetime.fromtimestamp((run.info.start_time or 0) / 1000, tz=UTC)
    try:
        report = _load_report(client, run_id)
    except _Unreadable as exc:
        decision = tags.get(GATE_DECISION_TAG)
        champion = tags.get(GATE_CHAMPION_TAG)
        return Replayed(
            run_id=run_id,
            started=started,
            promotion=tags.get(PROMOTION_TAG),
            candidate_version=tags.get(EVALUATED_VERSION_TAG) or versions.get(run_id),
            champion_version=None if champion in (None, "none") else champion,
            then=cast(Decision, decision) if decision in get_args(Decision) else None,
            now=None,
            error=str(exc),
        )
    return replay_report(
        gates,
        report,
        run_id=run_id,
        started=started,
        candidate_version=tags.get(EVALUATED_VERSION_TAG) or versions.get(report.candidate.run_id),
    )


class _Unreadable(Exception):
    pass


def _load_report(client: MlflowClient, run_id: str) -> GateReport:
    with tempfile.TemporaryDirectory(prefix="promoter-replay-") as scratch:
        try:
            path = Path(client.download_artifacts(run_id, GATE_REPORT_ARTIFACT, scratch))
            text = path.read_text(encoding="utf-8")
        except (MlflowException, OSError, UnicodeDecodeError) as exc:
            raise _Unreadable(f"{GATE_REPORT_ARTIFACT} cannot be read: {_reason(exc)}") from None
    try:
        return GateReport.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise _Unreadable(
            f"{GATE_REPORT_ARTIFACT} is not a gate report: {where}: {first['msg']}{more}"
        ) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, MlflowException):
        return exc.message
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
