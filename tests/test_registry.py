"""The MLflow registry as system of record, against a real SQLite-backed MLflow store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from promoter.pipelines.tracking import configure_tracking
from promoter.promotion.status import utc_now
from promoter.registry import MlflowRegistry

MODEL = "digits-registry-test"


@pytest.fixture
def registry(registered_digits: Path) -> MlflowRegistry:
    return MlflowRegistry(configure_tracking(registered_digits), actor="alice@laptop")


def _trained_run(client: MlflowClient) -> str:
    run_id = client.get_model_version_by_alias("digits", "champion").run_id
    assert run_id is not None
    return run_id


def _fresh_model(registry: MlflowRegistry, name: str, versions: int) -> None:
    """A model with `versions` versions of the same trained run (enough to move aliases between)."""
    run_id = _trained_run(registry.client)
    registry.client.create_registered_model(name)
    source = registry.client.get_model_version("digits", "1").source
    assert source is not None
    for _ in range(versions):
        registry.client.create_model_version(name, source, run_id=run_id)


def test_registering_a_run_twice_returns_the_same_version(registry: MlflowRegistry) -> None:
    run_id = _trained_run(registry.client)
    name = f"{MODEL}-register"
    first = registry.register(name, run_id, "p1")
    again = registry.register(name, run_id, "p1")
    assert first == again == registry.registered_version(name, run_id)
    assert len(registry.client.search_model_versions(f"name='{name}'")) == 1
    assert registry.client.get_model_version(name, first).tags["promoter.promotion"] == "p1"


def test_moving_the_champion_keeps_one_champion_the_previous_one_and_a_history(
    registry: MlflowRegistry,
) -> None:
    name = f"{MODEL}-moves"
    _fresh_model(registry, name, versions=2)
    before_any = utc_now()

    registry.move_champion(name, "1", "promotion a")
    between = utc_now()
    registry.move_champion(name, "2", "promotion b")
    registry.move_champion(name, "2", "promotion b (resumed)")  # a resumed promotion: no new entry

    assert registry.champion(name) == "2"
    assert str(registry.client.get_model_version_by_alias(name, "previous-champion").version) == "1"
    moves = [(m.alias, m.from_version, m.to_version, m.why) for m in registry.alias_history(name)]
    assert moves == [
        ("champion", None, "1", "promotion a"),
        ("previous-champion", None, "1", "promotion b"),
        ("champion", "1", "2", "promotion b"),
    ]
    assert all(m.by == "alice@laptop" for m in registry.alias_history(name))
    tags = registry.client.get_model_version(name, "2").tags
    assert tags["promoter.promoted_by"] == "alice@laptop" and tags["promoter.promoted_why"] == "promotion b"

    # "what was in production at time X, and who put it there"
    assert registry.champion_at(name, before_any - timedelta(seconds=1)) is None
    then = registry.champion_at(name, between)
    assert then is not None and then.to_version == "1" and then.by == "alice@laptop"
    now = registry.champion_at(name, utc_now())
    assert now is not None and now.to_version == "2"


def test_a_run_without_gate_report_has_no_summary(registry: MlflowRegistry) -> None:
    """The engine turns this into a failure: a missing report must never read as a pass."""
    assert registry.gate_summary(_trained_run(registry.client)) is None
    assert registry.gate_summary("0" * 32) is None


def test_versions_that_do_not_exist_are_reported_as_such(registry: MlflowRegistry) -> None:
    assert registry.has_version("digits", "1")
    assert not registry.has_version("digits", "99")
    assert not registry.has_version("no-such-model", "1")
    assert registry.champion("no-such-model") is None


@pytest.mark.parametrize("alias", ["previous-champion", "champion"])
@pytest.mark.parametrize("killed_at", ["set_registered_model_tag", "set_registered_model_alias"])
def test_a_move_interrupted_at_any_point_is_finished_once(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, alias: str, killed_at: str
) -> None:
    """The operator killed in the middle of a move (seen in the cluster kill test): whichever of
    the record and the alias it wrote, the retry must neither lose the record nor write it twice."""
    name = f"{MODEL}-interrupted-{alias}-{killed_at}"
    _fresh_model(registry, name, versions=2)
    registry.move_champion(name, "1", "promotion a")
    real = getattr(registry.client, killed_at)

    def killed(model: str, key: str, value: str) -> None:
        if alias in (key, value) or f'"alias": "{alias}"' in value:
            raise KeyboardInterrupt("killed")  # what a SIGKILL leaves: whatever was written before
        real(model, key, value)

    monkeypatch.setattr(registry.client, killed_at, killed)
    with pytest.raises(KeyboardInterrupt):
        registry.move_champion(name, "2", "promotion b")
    monkeypatch.setattr(registry.client, killed_at, real)
    registry.move_champion(name, "2", "promotion b")  # the resumed promotion

    moves = [(m.alias, m.from_version, m.to_version) for m in registry.alias_history(name)]
    assert moves == [("champion", None, "1"), ("previous-champion", None, "1"), ("champion", "1", "2")]
    assert registry.champion(name) == "2"
    assert str(registry.client.get_model_version_by_alias(name, "previous-champion").version) == "1"
