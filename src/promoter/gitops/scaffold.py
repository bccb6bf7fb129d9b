"""`promoter gitops init DIR`: the GitOps repository a user copies, with a staging and a production
environment that Argo CD syncs from two branches of it.

The layout (README "Promote with git"):

    charts/promoter/                      a copy of the chart, the base both environments share
    environments/<env>/values.yaml        what differs per environment, and nothing else
    environments/<env>/promotions/        the ModelPromotions Argo CD syncs into <env>
    applications/<env>.yaml               the Argo CD Application: branch `staging` / `main`
    README.md                             the commands: promote, review, merge, revert

Staging's operator publishes production's record (a ModelPromotion pinning the version and image it
proved) by committing it to `environments/production/promotions/` on the `staging` branch; merging
`staging` into `main` is the review that lets production act on it.

The chart is copied from the installed package (`promoter.chart`, package data), so that the command
works from a wheel as well as from a checkout, and the repository gets the chart of the promoter
version that wrote it. Everything is checked before anything is written: a refused init leaves the
directory as it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from promoter.promotion.spec import IMAGE_DIGEST_PATTERN, LABEL_VALUE_MAX, LABEL_VALUE_PATTERN

# The API server a pod of the cluster Argo CD runs in reaches (Argo CD's built-in `in-cluster`).
IN_CLUSTER = "https://kubernetes.default.svc"
ARGOCD_NAMESPACE = "argocd"
RELEASE = "promoter"  # the chart's release in every environment: the documented names (promoter-operator)
CHART = PurePosixPath("charts/promoter")
# A Kubernetes namespace (RFC 1123 label).
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE_MAX = 63

# What the operator writes on a model's Rollout, so what Argo CD must neither report as drift nor put
# back on a sync (RespectIgnoreDifferences): the `server` container's image (spec.rollout.image) and
# its PROMOTER_MODEL_URI (the promoted version); see operator/argo_rollouts.py. Git is the truth for
# everything else, with one limit of Argo CD's: it keeps the whole `server` container as it is live
# once a path inside it is ignored (argoproj/argo-cd#23283), so a change to that container in git
# (resources, probes) is reported OutOfSync and waits for a manual sync.
OPERATOR_OWNED_ROLLOUT_FIELDS = (
    '.spec.template.spec.containers[] | select(.name == "server") | .image',
    '.spec.template.spec.containers[] | select(.name == "server") | .env[]'
    ' | select(.name == "PROMOTER_MODEL_URI")',
)


class ScaffoldError(ValueError):
    """An init refused before anything was written; the message names each problem."""


@dataclass(frozen=True)
class Environment:
    """One environment: an Argo CD Application of the same name, following one branch."""

    name: str  # the Application, and its directory under environments/
    branch: str  # the revision its Application follows
    namespace: str  # where its release, Rollouts and promotions live
    server: str  # the API server of its cluster, as Argo CD names it
    alias: str  # the registry alias its operator promotes to


def staging(namespace: str = "staging", server: str = IN_CLUSTER) -> Environment:
    return Environment("staging", "staging", namespace, server, "staging")


def production(namespace: str = "production", server: str = IN_CLUSTER) -> Environment:
    return Environment("production", "main", namespace, server, "champion")


@dataclass(frozen=True)
class Repository:
    """What `promoter gitops init` is asked for; `check()` says what is wrong with it."""

    repo_url: str
    image: str
    model: str = "digits"
    staging: Environment = field(default_factory=staging)
    production: Environment = field(default_factory=production)
    # The one MLflow registry both environments use. None: production's own tracking server, which
    # staging reaches by its Service name: only when both share a cluster.
    tracking_uri: str | None = None

    @property
    def one_cluster(self) -> bool:
        return self.staging.server == self.production.server

    @property
    def environments(self) -> tuple[Environment, Environment]:
        return (self.staging, self.production)

    def check(self) -> None:
        """Raise ScaffoldError naming every problem; return when the repository can be written."""
        problems = [
            *_model_problems(self.model),
            *_image_problems(self.image),
            *_repo_url_problems(self.repo_url),
        ]
        for env in self.environments:
            if not _NAMESPACE.match(env.namespace) or len(env.namespace) > _NAMESPACE_MAX:
                problems.append(
                    f"{env.name} namespace {env.namespace!r}: must be a Kubernetes namespace "
                    f"(at most {_NAMESPACE_MAX} characters: a-z, 0-9, '-')"
                )
            if not re.match(r"^https://\S+$", env.server):
                problems.append(f"{env.name} server {env.server!r}: must be an API server URL (https://...)")
        if self.one_cluster and self.staging.namespace == self.production.namespace:
            problems.append(
                f"staging and production are both namespace {self.staging.namespace!r} of "
                f"{self.staging.server}: each environment needs its own"
            )
        if self.tracking_uri is not None and not re.match(r"^https?://\S+$", self.tracking_uri):
            problems.append(f"tracking URI {self.tracking_uri!r}: must be an http(s) URL")
        if self.tracking_uri is None and not self.one_cluster:
            problems.append(
                "staging and production are in different clusters: give the tracking URI of the one "
                "MLflow registry both reach (--tracking-uri)"
            )
        if problems:
            raise ScaffoldError("; ".join(problems))


def _model_problems(model: str) -> list[str]:
    """The model is an MLflow registered model and a label value (the spec's rule), and it names the
    chart's Rollout `<model>-serving` and Services (the chart's stricter rule, read from its schema)."""
    rule = _chart_schema()["properties"]["models"]["items"]["properties"]["name"]
    if not re.match(LABEL_VALUE_PATTERN, model) or len(model) > LABEL_VALUE_MAX:
        return [
            f"model {model!r}: must be a registered model name that is a label value (at most "
            f"{LABEL_VALUE_MAX} characters: letters, digits, '-', '_', '.', beginning and ending with a "
            "letter or digit)"
        ]
    if not re.match(rule["pattern"], model) or len(model) > rule["maxLength"]:
        return [
            f"model {model!r}: the chart names its Rollout {model}-serving, so it must be at most "
            f"{rule['maxLength']} characters of a-z, 0-9 and '-', beginning with a letter"
        ]
    return []


def _image_problems(image: str) -> list[str]:
    if re.match(IMAGE_DIGEST_PATTERN, image):
        return []
    return [
        f"image {image!r}: must be pinned by digest, repository@sha256:<64 hex> (a tag can be moved "
        "to other bytes; `docker buildx imagetools inspect IMAGE:TAG` prints the digest)"
    ]


def _repo_url_problems(url: str) -> list[str]:
    if url and not re.search(r"\s", url):
        return []
    return [f"repository URL {url!r}: must be the git URL Argo CD reads this repository from"]


def packaged_chart() -> Traversable:
    """The chart shipped as package data (pyproject: `promoter.chart` is charts/promoter)."""
    return resources.files("promoter.chart")


def _chart_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(packaged_chart().joinpath("values.schema.json").read_text())
    return schema


def _chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(packaged_chart().joinpath("values.yaml").read_text())
    return values


def production_tracking_uri(repository: Repository) -> str:
    """Production's tracking server by its Service name (promoter.trackingService in the chart)."""
    port = _chart_values()["tracking"]["port"]
    return f"http://{RELEASE}-tracking.{repository.production.namespace}.svc:{port}"


def _chart_files(root: Traversable, prefix: PurePosixPath = CHART) -> dict[PurePosixPath, bytes]:
    """Every file of the packaged chart, by its path in the repository (bytecode caches left out)."""
    found: dict[PurePosixPath, bytes] = {}
    for entry in root.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found |= _chart_files(entry, prefix / entry.name)
        else:
            found[prefix / entry.name] = entry.read_bytes()
    return found


def _q(value: str) -> str:
    """A YAML scalar for any string (JSON's quoting is valid YAML)."""
    return json.dumps(value)


def values_file(repository: Repository, env: Environment) -> str:
    """An environment's values: only what differs from the chart's defaults."""
    image, digest = repository.image.split("@", 1)
    lines = [
        f"# {env.name.capitalize()}: the values of charts/promoter that differ for this environment.",
        f"# Argo CD Application `{env.name}` (applications/{env.name}.yaml) renders the chart with this",
        f"# file, from branch `{env.branch}`. Keep the two environments' files this small: what differs",
        "# is the alias, the Application, the record staging publishes and where MLflow is.",
        "",
        "# the one image every component runs, pinned by digest (a tag can be moved to other bytes)",
        "image:",
        f"  repository: {_q(image)}",
        f"  digest: {_q(digest)}",
        "",
        "operator:",
        f"  # the alias this environment promotes to (the previous holder: @previous-{env.alias})",
        f"  championAlias: {env.alias}",
        "  # The admission webhook's CA (base64 PEM). Argo CD renders the chart without a cluster, so",
        "  # the chart cannot read it from the certificate Secret: see README.md, before the first sync.",
        "  webhook:",
        '    caBundle: ""',
        "",
        "gitops:",
        f"  application: {env.name}       # act only on the promotions Application `{env.name}` synced",
    ]
    if env == repository.staging:
        record = f"environments/{repository.production.name}/promotions"
        lines += [
            "  # commit production's record of each promotion made here (merge `staging` to deploy it)",
            "  record:",
            f"    repository: {_q(repository.repo_url)}",
            f"    branch: {env.branch}",
            f"    directory: {record}",
        ]
    tracking = _tracking_values(repository, env)
    if tracking:
        lines += ["", *tracking]
    lines += ["", "models:", f"  - name: {repository.model}", ""]
    return "\n".join(lines)


def _tracking_values(repository: Repository, env: Environment) -> list[str]:
    if repository.tracking_uri is not None:
        uri = repository.tracking_uri
        why = "# the one MLflow registry of every environment"
    elif env == repository.staging:
        uri = production_tracking_uri(repository)
        why = "# the one MLflow registry of every environment: production's tracking server"
    else:
        return []  # production runs the tracking server (the chart's default)
    return [why, "tracking:", "  enabled: false", f"  externalUri: {_q(uri)}"]


def application(repository: Repository, env: Environment) -> dict[str, Any]:
    """The Argo CD Application of one environment: the chart with the environment's values, and the
    environment's promotions, both from the environment's branch."""
    helm: dict[str, Any] = {
        "releaseName": RELEASE,
        "valueFiles": [f"../../environments/{env.name}/values.yaml"],
    }
    if repository.one_cluster and env == repository.staging:
        # CRDs are cluster-scoped: two Applications applying the same ones would take them from each
        # other on every sync (SharedResourceWarning). Production's installs them.
        helm["skipCrds"] = True
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": env.name, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "project": "default",
            "sources": [
                {
                    "repoURL": repository.repo_url,
                    "targetRevision": env.branch,
                    "path": str(CHART),
                    "helm": helm,
                },
                {
                    "repoURL": repository.repo_url,
                    "targetRevision": env.branch,
                    "path": f"environments/{env.name}/promotions",
                },
            ],
            "destination": {"server": env.server, "namespace": env.namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                # Client-side apply, but the chart's Rollout asks for server-side apply itself
                # (templates/serving.yaml says why, and why not the Services)
                "syncOptions": ["CreateNamespace=true", "RespectIgnoreDifferences=true"],
                # An automated sync that failed is not tried again for the same commit: a retry
                # covers what is only early (staging's promotions before production has put the
                # CRDs in a shared cluster).
                "retry": {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "1m"}},
            },
            "ignoreDifferences": [
                {
                    "group": "argoproj.io",
                    "kind": "Rollout",
                    "jqPathExpressions": list(OPERATOR_OWNED_ROLLOUT_FIELDS),
                }
            ],
        },
    }


def _application_file(repository: Repository, env: Environment) -> str:
    header = (
        f"# Argo CD Application `{env.name}`: branch `{env.branch}` of this repository into namespace "
        f"{env.namespace}.\n# kubectl apply -n {ARGOCD_NAMESPACE} -f applications/\n"
    )
    return header + yaml.safe_dump(application(repository, env), sort_keys=False, width=200)


def readme(repository: Repository) -> str:
    """The commands a user types, in this repository's own terms."""
    model, stage, prod = repository.model, repository.staging, repository.production
    promotions = f"environments/{stage.name}/promotions"
    records = f"environments/{prod.name}/promotions"
    return f"""# Promotions of `{model}`, through git

Written by `promoter gitops init`. Two environments, each an Argo CD Application syncing one branch:

| environment | branch | namespace | cluster | promotes to |
| --- | --- | --- | --- | --- |
| {stage.name} | `{stage.branch}` | `{stage.namespace}` | {stage.server} | `@{stage.alias}` |
| {prod.name} | `{prod.branch}` | `{prod.namespace}` | {prod.server} | `@{prod.alias}` |

- `charts/promoter/`: the promoter chart, shared by both; `environments/<env>/values.yaml`: only what
  differs. `environments/<env>/promotions/`: the ModelPromotions Argo CD applies in that environment.
- `applications/`: the two Applications. Argo CD ignores what the operator owns on the Rollout (the
  server's image and its `PROMOTER_MODEL_URI`); git is the truth for everything else.

## Before the first sync

```bash
git init -b {prod.branch} && git add -A && git commit -m "chore: promoter gitops layout"
git branch {stage.branch}
git remote add origin {repository.repo_url}
git push -u origin {prod.branch} {stage.branch}
```

The admission webhook needs a certificate in each namespace, and its CA in the values (Argo CD renders
the chart without a cluster, so the chart cannot read the CA from the Secret):

```bash
for env in {stage.namespace} {prod.namespace}; do
  kubectl create namespace $env
  promoter webhook-cert --host {RELEASE}-operator-webhook.$env.svc --out webhook-tls-$env
  kubectl -n $env create secret generic promoter-webhook-tls --from-file=webhook-tls-$env/
  base64 -w0 webhook-tls-$env/ca.crt   # -> operator.webhook.caBundle in that environment's values.yaml
done
```

Commit the two caBundles on both branches, give the {stage.name} operator push access to branch
`{stage.branch}` of {repository.repo_url}, then:

```bash
kubectl apply -n {ARGOCD_NAMESPACE} -f applications/
```

## Promote

1. On `{stage.branch}`, add a ModelPromotion (see promoter's `examples/{model}/promotion.yaml`) to
   `{promotions}/`, commit, push. Argo CD applies it in `{stage.namespace}`; the {stage.name} operator
   trains, gates the candidate against `@champion`, runs the blue/green preview and load test, and
   moves `@{stage.alias}`.
2. When it is Promoted, the {stage.name} operator commits production's record to `{records}/` on
   `{stage.branch}`: a ModelPromotion pinning the version (`source.modelVersion`) and the image
   (`rollout.image`) it proved, with the evidence in its annotations and in the commit message.
3. Review it, then deploy it to {prod.name}:

   ```bash
   git checkout {stage.branch} && git pull && git show      # the record and its evidence
   git checkout {prod.branch} && git merge --no-ff {stage.branch} && git push
   ```

   Argo CD applies the record in `{prod.namespace}`; the {prod.name} operator gates the same version
   against `@champion` and moves `@{prod.alias}`.
4. Watch it:

   ```bash
   kubectl get mp -n {prod.namespace}
   kubectl get application -n {ARGOCD_NAMESPACE} {prod.name} -o jsonpath='{{.status.sync.status}}'
   promoter history {model}       # every alias move, with the git commit that caused it
   ```

## Roll back

```bash
git checkout {prod.branch} && git revert -m 1 <merge commit> && git push
```
"""


def plan(repository: Repository) -> dict[PurePosixPath, bytes]:
    """Every file of the repository, by path: the chart's copy, the values, the Applications."""
    repository.check()
    files = _chart_files(packaged_chart())
    texts: dict[PurePosixPath, str] = {PurePosixPath("README.md"): readme(repository)}
    for env in repository.environments:
        base = PurePosixPath("environments") / env.name
        texts[base / "values.yaml"] = values_file(repository, env)
        texts[base / "promotions" / ".gitkeep"] = ""
        texts[PurePosixPath("applications") / f"{env.name}.yaml"] = _application_file(repository, env)
    return files | {path: text.encode() for path, text in texts.items()}


def init(directory: Path, repository: Repository) -> list[PurePosixPath]:
    """Write the repository into `directory` (absent or empty) and return what was written, sorted.
    Raises ScaffoldError, having written nothing, when the directory or the request is refused."""
    problems = []
    if directory.exists() and not directory.is_dir():
        problems.append(f"{directory} exists and is not a directory")
    elif directory.is_dir() and any(directory.iterdir()):
        problems.append(f"{directory} is not empty: give a new or empty directory")
    try:
        files = plan(repository)
    except ScaffoldError as exc:
        problems.append(str(exc))
    if problems:
        raise ScaffoldError("; ".join(problems))
    for path, content in sorted(files.items()):
        target = directory.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(files)
