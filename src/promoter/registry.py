"""The MLflow model registry as the promotion's system of record: versions, aliases, their history.

Only aliases are used (`@champion`, `@previous-champion`), never the deprecated stages. One registry
serves every environment: production promotes to `@champion`, another environment to an alias of
its own (staging: `@staging`, `@previous-staging`), so a candidate is always gated against
production. MLflow keeps no history of alias moves, so every move is also written as a registered-model tag
`promoter.alias-move.NNNNNN` (who, when, why, from which version): "what was in production on date X,
and who put it there" is answered by `champion_at`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from promoter.promotion.gates import GateReport
from promoter.promotion.names import (
    ALIAS_MOVE_TAG_PREFIX,
    CHAMPION_ALIAS,
    GATE_REPORT_ARTIFACT,
    PROMOTED_TAG_PREFIX,
    PROMOTION_TAG,
    PROVEN_BY_TAG,
    PROVEN_IMAGE_TAG,
    previous_alias,
    run_artifact_uri,
)
from promoter.promotion.status import GateSummary, utc_now


def model_missing(client: MlflowClient, model: str, exc: MlflowException) -> bool:
    """Whether `exc`, raised by a request about registered model `model`, means the model does not exist.

    A plain MLflow server answers 404. MLflow's basic-auth app (`promoter tracking-server`) answers
    403 instead, for everyone but admins: its validators look the model up first and deny a
    request about one that is absent, so that a 403 cannot tell a caller what exists. A 403 is
    therefore checked against the models this user can list (search results are filtered by read
    permission, and every promoter component reads every model): one it cannot find does not exist
    for it; one it finds is a real denial, raised as such.
    """
    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        return True
    if exc.error_code == "PERMISSION_DENIED":
        return not client.search_registered_models(filter_string=f"name = '{model}'")
    return False


def current_champion(client: MlflowClient, model: str, alias: str = CHAMPION_ALIAS) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if model_missing(client, model, exc):
            return None
        raise


@dataclass(frozen=True)
class AliasMove:
    alias: str
    from_version: str | None
    to_version: str
    by: str
    at: datetime
    why: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "alias": self.alias,
                "from": self.from_version,
                "to": self.to_version,
                "by": self.by,
                "at": self.at.isoformat(),
                "why": self.why,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> AliasMove:
        data = json.loads(raw)
        return cls(
            data["alias"],
            data["from"],
            data["to"],
            data["by"],
            datetime.fromisoformat(data["at"]),
            data["why"],
        )


class MlflowRegistry:
    def __init__(self, client: MlflowClient, actor: str, champion_alias: str = CHAMPION_ALIAS) -> None:
        self.client = client
        self.actor = actor  # who moves aliases: a user locally, the operator's service account in a cluster
        self.alias = champion_alias  # the alias this environment promotes to
        self.previous_alias = previous_alias(champion_alias)

    def gate_summary(self, run_id: str) -> GateSummary | None:
        try:
            raw = mlflow.artifacts.load_text(run_artifact_uri(run_id, GATE_REPORT_ARTIFACT))
            report = GateReport.model_validate_json(raw)
        except (MlflowException, OSError, ValidationError):
            return None
        return GateSummary(
            passed=report.passed,
            decision=report.decision,
            failures=report.blocking_failures,
            inconclusive=report.inconclusive,
            advisory_failures=[g for g in report.gates if not g.enforced and g.verdict == "fail"],
            report_uri=run_artifact_uri(run_id, GATE_REPORT_ARTIFACT),
        )

    def registered_version(self, model: str, run_id: str) -> str | None:
        try:
            versions = self.client.search_model_versions(f"name='{model}' and run_id='{run_id}'")
        except MlflowException:
            return None
        return str(min(int(v.version) for v in versions)) if versions else None

    def has_version(self, model: str, version: str) -> bool:
        try:
            self.client.get_model_version(model, version)
        except MlflowException:
            return False
        return True

    def exists(self, model: str) -> bool:
        try:
            self.client.get_registered_model(model)
        except MlflowException as exc:
            if model_missing(self.client, model, exc):
                return False
            raise
        return True

    def champion(self, model: str) -> str | None:
        found = current_champion(self.client, model, self.alias)
        return str(found.version) if found is not None else None

    def previous_champion(self, model: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model, self.previous_alias).version)
        except MlflowException as exc:
            if model_missing(self.client, model, exc):
                return None
            raise

    def register(self, model: str, run_id: str, promotion: str) -> str:
        existing = self.registered_version(model, run_id)
        if existing is not None:
            return existing
        outputs = self.client.get_run(run_id).outputs
        logged = outputs.model_outputs[0].model_id if outputs and outputs.model_outputs else None
        if logged is None:
            raise MlflowException(f"run {run_id} logged no model to register")
        try:
            self.client.create_registered_model(model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        registered = self.client.create_model_version(
            model, f"models:/{logged}", run_id=run_id, tags={PROMOTION_TAG: promotion}, model_id=logged
        )
        return str(registered.version)

    def move_champion(self, model: str, version: str, reason: str) -> None:
        current = self.champion(model)
        if current == version:
            return  # already done (a resumed promotion): the history must not get a second entry
        if current is not None:
            self._set_alias(model, self.previous_alias, current, reason)
        record = {"by": self.actor, "at": utc_now().isoformat(), "why": reason}
        for key, value in record.items():
            self.client.set_model_version_tag(model, version, f"{PROMOTED_TAG_PREFIX}{key}", value)
        self._set_alias(model, self.alias, version, reason)  # last: it marks the move as done

    def proven_image(self, model: str, version: str) -> str | None:
        try:
            tags = self.client.get_model_version(model, version).tags
        except MlflowException:
            return None
        return tags.get(PROVEN_IMAGE_TAG)

    def record_proven_image(self, model: str, version: str, image: str, promotion: str) -> None:
        """Tags, on the version: the image it was proven with and the promotion that proved it. Written
        before the record that pins the image is committed, so a merged record is always provable."""
        self.client.set_model_version_tag(model, version, PROVEN_IMAGE_TAG, image)
        self.client.set_model_version_tag(model, version, PROVEN_BY_TAG, promotion)

    def _set_alias(self, model: str, alias: str, version: str, reason: str) -> None:
        """Record the move, then make it. A process killed in between finds its own record on the
        retry and only moves the alias: the history never misses a move nor holds one twice."""
        previous = None
        with contextlib.suppress(MlflowException):
            previous = str(self.client.get_model_version_by_alias(model, alias).version)
        if previous == version:
            return
        history = self.alias_history(model)
        last = next((m for m in reversed(history) if m.alias == alias), None)
        recorded = last is not None and (last.from_version, last.to_version, last.why) == (
            previous,
            version,
            reason,
        )
        if not recorded:
            move = AliasMove(alias, previous, version, self.actor, utc_now(), reason)
            self.client.set_registered_model_tag(
                model, f"{ALIAS_MOVE_TAG_PREFIX}{len(history):06d}", move.to_json()
            )
        self.client.set_registered_model_alias(model, alias, version)

    def alias_history(self, model: str) -> list[AliasMove]:
        tags = self.client.get_registered_model(model).tags
        return [
            AliasMove.from_json(tags[key]) for key in sorted(tags) if key.startswith(ALIAS_MOVE_TAG_PREFIX)
        ]

    def champion_at(self, model: str, when: datetime) -> AliasMove | None:
        """The move that made the then-champion, or None if there was no champion at `when`."""
        moves = [m for m in self.alias_history(model) if m.alias == self.alias and m.at <= when]
        return moves[-1] if moves else None
