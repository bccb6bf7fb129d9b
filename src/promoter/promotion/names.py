"""Every name promoter shares with MLflow: aliases, tags and artifact paths, in one place.

They are a contract with data already written: a training run tagged today is found by a resumed
promotion tomorrow and read by `promoter history` next year. Rename one here and every reader and
writer follows; never spell one out elsewhere.
"""

from __future__ import annotations


# --- registered-model aliases (never stages: MLflow 3 deprecates them) -------------------------
def previous_alias(alias: str) -> str:
    """The alias that keeps `alias`'s last holder, the rollback target: `previous-champion`,
    `previous-staging`."""
    return f"previous-{alias}"


CHAMPION_ALIAS = "champion"  # production's; another environment promotes to an alias of its own
PREVIOUS_CHAMPION_ALIAS = previous_alias(CHAMPION_ALIAS)


# --- registered-model tags: one per alias move, MLflow keeping no alias history ----------------
ALIAS_MOVE_TAG_PREFIX = "promoter.alias-move."

# --- model-version tags: who promoted the version, when and why --------------------------------
PROMOTED_TAG_PREFIX = "promoter.promoted_"

# --- model-version tags: the image a version was proven with, and by which promotion ------------
PROVEN_IMAGE_TAG = "promoter.proven-image"
PROVEN_BY_TAG = "promoter.proven-by"

# --- run and model-version tags: which promotion made it, from what -----------------------------
PROMOTION_TAG = "promoter.promotion"
EVALUATED_VERSION_TAG = "promoter.evaluated_version"  # on a run that gated a registered version
PIPELINE_TAG = "promoter.pipeline"
MODEL_TAG = "promoter.model"  # the registered model a training run is a candidate for
DEVICE_TAG = "device"  # where a run trained: "cpu" or "cuda:0 (<GPU name>)"
DATA_VERSION_TAG = "data.version"
DATA_SHA_TAG = "data.sha256"
CONFIG_SHA_TAG = "config.sha256"
GIT_COMMIT_TAG = "git.commit"
GIT_DIRTY_TAG = "git.dirty"
# What a server reports as the lineage of the model it serves.
LINEAGE_TAGS = (GIT_COMMIT_TAG, GIT_DIRTY_TAG, DATA_VERSION_TAG, DATA_SHA_TAG, CONFIG_SHA_TAG)

# --- run tags: a run that holds a gate report (GATE_REPORT_ARTIFACT) says so, and how it ended -----
GATE_DECISION_TAG = "gate.decision"  # pass | fail | inconclusive: `promoter gates replay` finds reports by it
GATE_CHAMPION_TAG = "gate.champion_version"  # the @champion version it was judged against, or "none"

# --- artifact paths in a run ---------------------------------------------------------------------
MODEL_ARTIFACT = "model"  # so that runs:/RUN/model resolves
GATE_REPORT_ARTIFACT = "gate_report.json"


def run_artifact_uri(run_id: str, artifact: str) -> str:
    return f"runs:/{run_id}/{artifact}"
