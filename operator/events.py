"""One Kubernetes Event per transition, so `kubectl describe mp` tells the promotion's story.

Event names are derived from the transition's place in the history: a transition reported twice
(after a restart between saving the status and posting) is one Event, not two.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.crd import GROUP, VERSION
from promoter.operator.cluster import PromotionRef, already_exists
from promoter.promotion.spec import KIND
from promoter.promotion.status import Transition

# Phases a user should look at: `kubectl get events --field-selector type=Warning`.
WARNING_PHASES = {"Rejected", "Failed"}
COMPONENT = "promoter-operator"


def event_manifest(ref: PromotionRef, index: int, transition: Transition) -> dict[str, Any]:
    at = transition.at.isoformat()
    return {
        "metadata": {
            "name": f"{ref.name}.{index:03d}-{transition.phase.lower()}",
            "namespace": ref.namespace,
        },
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "type": "Warning" if transition.phase in WARNING_PHASES else "Normal",
        "reason": transition.reason,
        "message": f"{transition.phase}: {transition.message}" if transition.message else transition.phase,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, api: client.ApiClient, ref: PromotionRef) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.ref = ref

    def record(self, index: int, transition: Transition) -> None:
        try:
            self.core.create_namespaced_event(self.ref.namespace, event_manifest(self.ref, index, transition))
        except ApiException as exc:
            if not already_exists(exc):
                raise
