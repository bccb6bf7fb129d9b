"""Where a promotion lives in the cluster, and what every object it creates carries.

Everything the operator creates (Workflows, load-test Jobs) is owned by its ModelPromotion, so the
garbage collector removes it with the promotion, and labelled with it, so `kubectl get -l` finds it.
The operator's settings, and what it hands the pods it starts, are in `promoter.operator.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promoter.crd import GROUP, VERSION
from promoter.pipelines.workflow import PROMOTION_LABEL
from promoter.promotion.spec import KIND


@dataclass(frozen=True)
class PromotionRef:
    namespace: str
    name: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def labels(self) -> dict[str, str]:
        return {PROMOTION_LABEL: self.name}

    def label_selector(self) -> str:
        """Selects everything this promotion created (`kubectl get -l` takes the same string)."""
        return ",".join(f"{key}={value}" for key, value in self.labels().items())

    def stamp(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest, in this promotion's namespace, labelled with it and owned by it."""
        metadata = manifest.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        metadata["labels"] = {**metadata.get("labels", {}), **self.labels()}
        metadata["ownerReferences"] = [self.owner_reference()]
        return manifest


def not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


def already_exists(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 409
