"""The ModelPromotion resource: the one contract shared by the CLI, the pipelines and the operator.

The same YAML is run locally (`promoter run`) and applied with kubectl, so these models are the
source of truth for the CRD schema too. Field names are camelCase on the wire (Kubernetes style)
and snake_case in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION = "mlops.promoter.dev/v1alpha1"
KIND = "ModelPromotion"

# Kubernetes object names (RFC 1123 subdomain).
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# A Kubernetes label value: the model name becomes the `mlops.promoter.dev/model` label, so it must be
# one; that also makes it a safe MLflow registered-model name (no '/', which breaks `models:/` URIs).
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE_MAX = 63
# Registered-model versions we accept: up to 10 digits, which leaves room for the derived names below.
MODEL_VERSION_MAX_DIGITS = 10
# metadata.name is the longest name every derived name still fits: it is the
# `mlops.promoter.dev/promotion` label value (<= 63), the Workflow `<name>-train` and the load-test
# Job `<name>-v<version>-loadtest`, whose name the Job controller copies into a pod label (<= 63).
# The Job is the longest: 63 - len("-v") - 10 digits - len("-loadtest") = 42. A longer name would be
# truncated into the same Job name for different versions.
PROMOTION_NAME_MAX = LABEL_VALUE_MAX - len("-v") - MODEL_VERSION_MAX_DIGITS - len("-loadtest")
_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A load test shorter than a second measures start-up; one longer than an hour holds a preview (and
# a promotion) hostage. Bounds are inclusive.
LOAD_TEST_MIN_SECONDS = 1.0
LOAD_TEST_MAX_SECONDS = 3600.0
# A revision git can parse and that cannot be mistaken for an option (`git rev-parse -x`).
_GIT_REVISION = r"^[A-Za-z0-9_][-A-Za-z0-9_./~^@{}+]*$"
# An image pinned by its content, `repository@sha256:<64 hex>`: a tag can be moved to other bytes, so
# "the image proven in staging" is only ever a digest.
IMAGE_DIGEST_PATTERN = r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$"


class SpecError(ValueError):
    """A ModelPromotion that cannot be accepted; the message names every offending field."""


def _dns_name(value: str) -> str:
    if not _DNS_NAME.match(value):
        raise ValueError("must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')")
    return value


# A Kubernetes object name (RFC 1123): promotions and the Rollouts they drive.
DnsName = Annotated[str, AfterValidator(_dns_name)]


@dataclass(frozen=True)
class Problem:
    """One reason a spec is refused: the field's path as written in YAML, and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidPromotion(SpecError):
    """A spec refused once the schema passed (by promoter.validation); `problems` lists every field
    at fault. Defined here, beside SpecError, so that every layer can raise and catch it."""

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"{origin}: invalid ModelPromotion", *(f"  {problem}" for problem in problems)]
        super().__init__("\n".join(lines))


class _Model(BaseModel):
    # No NaN or infinity anywhere: `maxP95Ms: .inf` is no budget, and NaN compares false to everything.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class DataRef(_Model):
    version: str = Field(min_length=1)
    # Optional pin: when set, training refuses data whose content hash differs.
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class Threshold(_Model):
    """A floor on a metric. `enforce: false` makes the gate advisory: evaluated, reported, never blocking."""

    min: Fraction
    enforce: bool = True


def _as_threshold(value: Any) -> Any:
    return {"min": value} if isinstance(value, int | float) and not isinstance(value, bool) else value


class RegressionGate(_Model):
    """The candidate may not fall more than `max_drop` below the current champion on `metric`."""

    metric: str = Field(default="accuracy", min_length=1)
    max_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    enforce: bool = True


# One-sided confidence of the paired intervals: below 0.5 a "lower bound" is above the point value.
Confidence = Annotated[float, Field(ge=0.5, lt=1.0)]


class PairedGate(_Model):
    """Per class, the candidate's recall against the champion's on the same held-out rows.

    A class passes when the lower bound of its paired difference (Newcombe's method 10) is above
    `-margin`; it fails when it is significantly worse (exact McNemar, Holm across classes) by more
    than the margin; anything else, or a class with fewer than `min_rows` rows, is inconclusive and
    waits for a person (AwaitingApproval). With 32-44 rows per digit class the feasible margin is
    about 0.05-0.09 (README, "Gates")."""

    margin: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    confidence: Confidence = 0.95
    min_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    enforce: bool = True


class MinGain(_Model):
    """The candidate must beat the champion by at least `min` on `metric`, judged on the lower bound
    of the paired interval rather than the point value: a gain the test set cannot show is none."""

    metric: str = Field(
        default="accuracy",
        pattern=r"^(accuracy|class/[^/]+/recall)$",
        description="accuracy, or class/<name>/recall: a proportion over the same rows for both models.",
    )
    min: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    confidence: Confidence = 0.95
    enforce: bool = True


class LatencyGate(_Model):
    """Forward latency of candidate and champion, measured in the same evaluation process on the same
    inputs, at batch 1 and at `batch_size`: a model twice as slow blocks whatever its accuracy."""

    batch_size: Annotated[int, Field(ge=2, le=4096)] = 32
    rounds: Annotated[int, Field(ge=10, le=10_000)] = 50
    max_p95_ms: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="The candidate's p95 at batch 1, in milliseconds."
    )
    max_ratio: Annotated[float, Field(ge=1.0)] | None = Field(
        default=None,
        description="Candidate median over champion median, at batch 1 and at batchSize (medians: a "
        "p95 on a busy machine measures the scheduler).",
    )
    enforce: bool = True

    @model_validator(mode="after")
    def _a_budget(self) -> LatencyGate:
        if self.max_p95_ms is None and self.max_ratio is None:
            raise ValueError("set maxP95Ms, maxRatio or both: a latency gate without a budget gates nothing")
        return self


class ReproducibilityGate(_Model):
    """Opt-in: retrain from the candidate's recorded lineage and compare the held-out metrics.
    Identical on CPU; within `gpu_tolerance` when either training ran on CUDA (its kernels are not
    bit-for-bit deterministic)."""

    gpu_tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    enforce: bool = True


class SetGates(_Model):
    """The gates one evaluation set is judged by. A bare number is shorthand for `{min: N}`."""

    absolute: dict[str, Threshold] = Field(default_factory=dict)
    per_class: dict[str, Threshold] = Field(default_factory=dict)
    paired: PairedGate | None = None
    min_gain: MinGain | None = None

    @field_validator("absolute", "per_class", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: _as_threshold(v) for key, v in value.items()}
        return value


class EvaluationSet(SetGates):
    """Another data version (recent production traffic, labelled later, say), evaluated in the same
    step as the held-out split with thresholds of its own, and reported apart. Every row of it is
    evaluated: no model trained on it."""

    data: DataRef


class Gates(SetGates):
    """Offline gates, evaluated on the held-out split (and on any `datasets`)."""

    regression: RegressionGate | None = None
    latency: LatencyGate | None = None
    reproducibility: ReproducibilityGate | None = None
    datasets: dict[DnsName, EvaluationSet] = Field(default_factory=dict, max_length=8)


class GitRef(_Model):
    revision: str = Field(
        default="HEAD",
        min_length=1,
        max_length=256,
        pattern=_GIT_REVISION,
        description="The code that trains must be this revision (a commit, branch, tag or HEAD).",
    )


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Resources(_Model):
    """Scheduling of the training step in a cluster; locally CUDA is used when present."""

    gpu: Annotated[int, Field(ge=0, le=16)] = 0
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class TrainSource(_Model):
    pipeline: str = Field(min_length=1)
    data: DataRef
    git: GitRef = GitRef()
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Resources()


class Source(_Model):
    """Exactly one of: train a new candidate, or promote an already registered version."""

    train: TrainSource | None = None
    model_version: str | None = Field(
        default=None,
        pattern=rf"^[1-9][0-9]{{0,{MODEL_VERSION_MAX_DIGITS - 1}}}$",
        description=f"A registered version of spec.model to promote: 1 to {MODEL_VERSION_MAX_DIGITS} digits.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.train is None) == (self.model_version is None):
            raise ValueError("exactly one of 'train' or 'modelVersion' must be set")
        return self


class LoadTest(_Model):
    users: Annotated[int, Field(ge=1, le=10_000)] = 20
    spawn_rate: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    duration: str = Field(
        default="15s",
        description="How long the load test runs: a number and a unit (ms, s, m or h), from 1s to 1h.",
    )
    max_p95_ms: Annotated[float, Field(gt=0)] | None = None
    max_error_rate: Fraction | None = None
    min_rps: Annotated[float, Field(ge=0)] | None = None
    # false: the budgets are measured and reported but never block (trial a new budget first)
    enforce: bool = True

    @field_validator("duration")
    @classmethod
    def _duration_bounded(cls, value: str) -> str:
        seconds = _seconds(value)
        if seconds is None:
            raise ValueError("must be a duration such as '1500ms', '15s', '2m' or '1h'")
        if not LOAD_TEST_MIN_SECONDS <= seconds <= LOAD_TEST_MAX_SECONDS:
            raise ValueError(f"must be between 1s and 1h, got {value}")
        return value

    @property
    def duration_seconds(self) -> float:
        seconds = _seconds(self.duration)
        assert seconds is not None  # guaranteed by the validator
        return seconds


def _seconds(duration: str) -> float | None:
    match = _DURATION.match(duration)
    return None if match is None else float(match["value"]) * _DURATION_UNITS[match["unit"]]


class Rollout(_Model):
    name: DnsName = Field(min_length=1, max_length=63)
    load_test: LoadTest = LoadTest()
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=IMAGE_DIGEST_PATTERN,
        description="The serving image, pinned by digest (repository@sha256:...). Set: the server runs "
        "exactly this image, and the model version must have been proven with it (a production record "
        "pins the image staging ran). Unset: the image the Rollout's template has.",
    )


class Approval(_Model):
    required: bool = False


class PromotionSpec(_Model):
    model: str = Field(
        min_length=1,
        max_length=LABEL_VALUE_MAX,
        pattern=LABEL_VALUE_PATTERN,
        description="The MLflow registered model, also the mlops.promoter.dev/model label: at most 63 "
        "characters, letters, digits, '-', '_' and '.', beginning and ending with a letter or digit.",
    )
    source: Source
    gates: Gates = Gates()
    rollout: Rollout | None = None
    approval: Approval = Approval()


class Metadata(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: DnsName = Field(
        min_length=1,
        max_length=PROMOTION_NAME_MAX,
        description=f"At most {PROMOTION_NAME_MAX} characters, so that every name derived from it fits.",
    )
    namespace: str | None = None


class ModelPromotion(_Model):
    api_version: Literal["mlops.promoter.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ModelPromotion"]
    metadata: Metadata
    spec: PromotionSpec

    @property
    def train(self) -> TrainSource:
        """The training source; callers that train must only be reached for train promotions."""
        if self.spec.source.train is None:
            raise SpecError(f"{self.metadata.name}: spec.source has no 'train' (it promotes a version)")
        return self.spec.source.train

    def to_manifest(self) -> dict[str, Any]:
        """The resource as applied with kubectl: camelCase, every default spelled out so that a later
        change of default cannot change the meaning of a promotion already under way."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True) | {
            "apiVersion": API_VERSION,
            "kind": KIND,
        }


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "model-")) or part in {"float", "int", "Threshold"}:
            continue  # pydantic's internal union/validator branch names, not fields
        else:
            path += f".{part}" if path else part
    return path or "(root)"


def parse_promotion(document: Any, *, origin: str = "<input>") -> ModelPromotion:
    """Validate a parsed YAML/JSON document; errors name each field (`spec.gates.absolute.accuracy.min`)."""
    if not isinstance(document, dict):
        got = "an empty document" if document is None else f"a {type(document).__name__}"
        raise SpecError(f"{origin}: expected a ModelPromotion mapping, got {got}")
    try:
        return ModelPromotion.model_validate(document)
    except ValidationError as exc:
        lines = [f"{origin}: invalid ModelPromotion"]
        for error in exc.errors():
            lines.append(f"  {_field_path(error['loc'])}: {error['msg']}")
        raise SpecError("\n".join(lines)) from None


def load_promotion(path: Path) -> ModelPromotion:
    """A spec file, with every way a file can be wrong (missing, a directory, binary, not YAML, not a
    mapping) reported as a SpecError naming the file, never as a traceback."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a ModelPromotion is UTF-8 YAML)") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_promotion(document, origin=str(path))
