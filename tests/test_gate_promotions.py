"""The statistical, latency, reproducibility and second-set gates in whole promotions on one machine:
real training, MLflow, `promoter run` / `train` / `evaluate` / `approve` as a user types them.

The module's champion (version 1) is a digits CNN trained with seed 7. Candidates are the same
pipeline with one thing changed: the seed, one class's training labels, the network's width. No
rollout: these promotions stop at the registry, which is all a gate decides about.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.lineage import GIT_COMMIT_ENV, code_revision
from promoter.pipelines.tracking import configure_tracking
from promoter.promotion.engine import GATES_INCONCLUSIVE
from promoter.promotion.gates import GateReport
from promoter.promotion.status import PromotionStatus
from promoter.registry import MlflowRegistry

from .conftest import run_cli

pytestmark = pytest.mark.slow

CHAMPION_PARAMS = {"epochs": 4, "lr": 0.003, "seed": 7}
# About 26 held-out rows per digit: one image lost moves a class's recall by 0.04, and the one-sided
# 95% lower bound of a class that lost one image is -0.155 (see the README, "Gates").
PAIRED = {"margin": 0.2, "minRows": 20}


@dataclass(frozen=True)
class Workdir:
    path: Path

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--workdir", self.path)

    def promote(self, spec: Path) -> tuple[subprocess.CompletedProcess[str], PromotionStatus]:
        completed = self.run("run", spec, "--json")
        assert completed.stdout, completed.stderr
        return completed, PromotionStatus.model_validate(json.loads(completed.stdout))

    def train(self, spec: Path) -> str:
        completed = self.run("train", spec)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout.strip()

    def evaluate(self, spec: Path, run_id: str) -> tuple[int, GateReport]:
        report = self.path / "reports" / f"{spec.stem}-{run_id}.json"
        completed = self.run("evaluate", spec, "--run-id", run_id, "--report", report)
        assert report.exists(), completed.stderr
        return completed.returncode, GateReport.model_validate_json(report.read_text())

    def champion(self) -> str | None:
        return MlflowRegistry(configure_tracking(self.path), actor="test").champion("digits")

    def spec(self, name: str, params: dict[str, Any], gates: dict[str, Any]) -> Path:
        document = {
            "apiVersion": "mlops.promoter.dev/v1alpha1",
            "kind": "ModelPromotion",
            "metadata": {"name": name},
            "spec": {
                "model": "digits",
                "source": {"train": {"pipeline": "digits", "data": {"version": "v1"}, "params": params}},
                "gates": gates,
            },
        }
        path = self.path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workdir]:
    """Version 1 is @champion: the first promotion has nothing to be compared with.

    The commit is baked in, as in an image: a developer's checkout with uncommitted changes is no
    lineage to reproduce from (the reproducibility gate says so), and this module is not about that."""
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(GIT_COMMIT_ENV, code_revision().commit)
        yield from _champion(Workdir(tmp_path_factory.mktemp("gates")))


def _champion(workdir: Workdir) -> Iterator[Workdir]:
    spec = workdir.spec("champion", CHAMPION_PARAMS, {"absolute": {"accuracy": 0.9}, "paired": PAIRED})
    completed, status = workdir.promote(spec)
    assert completed.returncode == 0, completed.stderr
    assert status.phase == "Promoted" and status.model_version == "1"
    assert status.gates is not None and status.gates.outcome == "pass"
    yield workdir
    run_cli("down", "--workdir", workdir.path)


def paired_verdicts(report: GateReport) -> dict[str, str]:
    return {g.name: g.verdict for g in report.gates if g.kind == "paired"}


def test_candidates_that_differ_only_by_seed_pass_or_are_inconclusive(workdir: Workdir) -> None:
    """The regression gate compares point values; the paired gate knows 26 rows a class cannot tell
    two seeds apart, so it never rejects one: it passes, or asks a person."""
    for seed in (1, 2):
        spec = workdir.spec(f"seed-{seed}", CHAMPION_PARAMS | {"seed": seed}, {"paired": PAIRED})
        code, report = workdir.evaluate(spec, workdir.train(spec))
        verdicts = paired_verdicts(report)
        assert len(verdicts) == 10 and "fail" not in verdicts.values(), report.gates
        assert (code, report.decision) in {(0, "pass"), (4, "inconclusive")}
        assert report.paired is not None and report.paired.overall.n == report.samples
        assert report.champion is not None and report.champion.version == "1"


def test_a_candidate_with_one_degraded_class_is_rejected_by_its_paired_gate(workdir: Workdir) -> None:
    degraded = CHAMPION_PARAMS | {"label_noise": 0.8, "noisy_class": 3}
    spec = workdir.spec("degraded", degraded, {"paired": PAIRED})
    completed, status = workdir.promote(spec)

    assert completed.returncode == 3, completed.stderr
    assert (status.phase, status.reason) == ("Rejected", "GatesFailed")
    assert status.gates is not None
    [failed] = status.gates.failures
    assert failed.name == "paired.recall[3]", status.gates.failures
    assert failed.statistics["pHolm"] < 0.05 and failed.statistics["delta"] < -0.2
    assert "significantly worse" in failed.detail
    assert status.model_version is None and workdir.champion() == "1"


def test_inconclusive_gates_wait_for_a_person_and_the_approval_finishes_the_promotion(
    workdir: Workdir,
) -> None:
    # minRows above the split's size: no class can be shown either way, by construction
    spec = workdir.spec("unsure", CHAMPION_PARAMS, {"paired": {"margin": 0.2, "minRows": 1000}})
    completed, status = workdir.promote(spec)

    assert completed.returncode == 4, completed.stderr
    assert (status.phase, status.reason) == ("AwaitingApproval", GATES_INCONCLUSIVE)
    assert status.gates is not None and len(status.gates.inconclusive) == 10
    assert all("fewer than minRows 1000" in g.detail for g in status.gates.inconclusive)
    assert status.model_version is None and workdir.champion() == "1"  # nothing registered yet

    approved = workdir.run("approve", "unsure", "--json")
    assert approved.returncode == 0, approved.stderr
    final = PromotionStatus.model_validate(json.loads(approved.stdout))
    assert final.phase == "Promoted" and final.approved_by
    assert [t.reason for t in final.history][-3:] == ["Approved", "InconclusiveGatesApproved", "Promoted"]
    assert workdir.champion() == final.model_version == "2"

    rolled_back = workdir.run("rollback", "digits")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert workdir.champion() == "1"


def test_a_much_wider_network_is_rejected_by_the_latency_gate(workdir: Workdir) -> None:
    wide = CHAMPION_PARAMS | {"epochs": 1, "channels": 128, "train_fraction": 0.3}
    latency = {"batchSize": 32, "rounds": 30, "maxRatio": 1.5}
    completed, status = workdir.promote(workdir.spec("wide", wide, {"latency": latency}))

    assert completed.returncode == 3, completed.stderr
    assert (status.phase, status.reason) == ("Rejected", "GatesFailed")
    assert status.gates is not None
    failed = {g.name: g for g in status.gates.failures}
    assert "latency.p50Ratio[batch32]" in failed, status.gates.failures
    slower = failed["latency.p50Ratio[batch32]"]
    assert slower.actual is not None and slower.actual > 1.5
    assert slower.statistics["candidateP50Ms"] > slower.statistics["championP50Ms"]
    assert workdir.champion() == "1"


def test_reproducibility_and_a_second_evaluation_set_are_judged_in_the_same_evaluation(
    workdir: Workdir,
) -> None:
    gates = {
        "absolute": {"accuracy": 0.8},
        "reproducibility": {},
        "datasets": {"shifted": {"data": {"version": "v1-shifted"}, "absolute": {"accuracy": 0.999}}},
    }
    spec = workdir.spec("repro", CHAMPION_PARAMS | {"seed": 3, "epochs": 2}, gates)
    code, report = workdir.evaluate(spec, workdir.train(spec))

    verdicts = {g.name: g.verdict for g in report.gates}
    assert verdicts["reproducibility.heldOut"] == "pass"  # retrained on CPU: identical
    assert report.reproduction is not None and report.reproduction.metrics
    assert all(original == again for original, again in report.reproduction.metrics.values())
    # the shifted set is gated on its own threshold, and reported apart
    assert verdicts["absolute.accuracy"] == "pass"
    assert verdicts["datasets.shifted/absolute.accuracy"] == "fail"
    shifted = report.datasets["shifted"]
    assert shifted.samples == 1797 and shifted.data_version == "v1-shifted"
    assert shifted.candidate["accuracy"] < report.candidate.metrics["accuracy"]
    assert code == 3 and report.decision == "fail"
