"""The ModelPromotion CRD against a real kube-apiserver (built from Go modules, with etcd), and
against the pydantic model it is generated from: both must accept and reject the same resources."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION, render
from promoter.promotion.spec import PROMOTION_NAME_MAX, SpecError, parse_promotion

from .conftest import EXAMPLES
from .kube import CRD_FILE, load_testbed

NAMESPACE = "default"


def test_the_committed_crd_is_the_one_the_spec_generates() -> None:
    assert CRD_FILE.read_text() == render(), (
        "regenerate: python -m promoter.crd > charts/promoter/crds/modelpromotion.yaml"
    )


def test_the_crd_renders_the_same_after_hera_changed_pyyaml() -> None:
    """Hera replaces PyYAML's str representer on import (multi-line strings as `|` blocks): the CRD
    must not depend on whether a process imported Hera before rendering it."""
    import hera.workflows  # noqa: F401  (imported for its side effect on PyYAML)

    assert yaml.safe_dump({"d": "two\nlines"}).startswith("d: |")  # the condition under test holds
    assert render() == CRD_FILE.read_text()


def _example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    return document


def _create(kube: Any, document: dict[str, Any]) -> tuple[bool, str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects: Any = client.CustomObjectsApi(kube)
    try:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, document, field_validation="Strict"
        )
    except ApiException as exc:
        return False, str(json.loads(exc.body or "{}").get("message", exc.body))
    objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, document["metadata"]["name"])
    return True, ""


def _variant(name: str, change: Any) -> dict[str, Any]:
    document = copy.deepcopy(_example())
    document["metadata"]["name"] = name
    change(document["spec"])
    return document


INVALID = [
    (
        "both-sources",
        lambda s: s["source"].update(modelVersion="3"),
        "exactly one of 'train' or 'modelVersion'",
    ),
    ("no-source", lambda s: s.update(source={}), "exactly one of 'train' or 'modelVersion'"),
    ("bad-version", lambda s: s.update(source={"modelVersion": "v3"}), "spec.source.modelVersion"),
    ("no-model", lambda s: s.pop("model"), "spec.model"),
    ("zero-users", lambda s: s["rollout"]["loadTest"].update(users=0), "spec.rollout.loadTest.users"),
    ("typo", lambda s: s.update(gatez={}), "gatez"),
    (
        "negative-gpu",
        lambda s: s["source"]["train"]["resources"].update(gpu=-1),
        "spec.source.train.resources.gpu",
    ),
]

VALID = [
    ("example", lambda s: None),
    ("existing-version", lambda s: s.update(source={"modelVersion": "4"})),
    ("advisory-gate", lambda s: s["gates"]["absolute"].update(accuracy={"min": 0.9, "enforce": False})),
    ("no-rollout", lambda s: s.pop("rollout")),
]


@pytest.mark.parametrize(("name", "change", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_the_api_server_and_the_model_reject_the_same_specs(
    kube: Any, name: str, change: Any, message: str
) -> None:
    document = _variant(name, change)
    accepted, reason = _create(kube, document)
    assert not accepted
    assert message in reason, reason
    with pytest.raises(SpecError):
        parse_promotion(document)


@pytest.mark.parametrize(("name", "change"), VALID, ids=[case[0] for case in VALID])
def test_the_api_server_and_the_model_accept_the_same_specs(kube: Any, name: str, change: Any) -> None:
    document = _variant(name, change)
    parse_promotion(document)
    accepted, reason = _create(kube, document)
    assert accepted, reason


def test_status_is_a_subresource_and_shows_in_the_columns(kube: Any) -> None:
    from kubernetes import client

    objects: Any = client.CustomObjectsApi(kube)
    document = _variant("with-status", lambda s: None)
    objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, document)
    try:
        # a status in the main resource is ignored: only the operator writes it, through /status
        document_status = {"status": {"phase": "Training", "modelVersion": "7"}}
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "with-status", document_status
        )
        assert "status" not in objects.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "with-status"
        )
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, PLURAL, "with-status", document_status
        )
        stored = objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "with-status")
        assert stored["status"]["phase"] == "Training"
        crd: Any = client.ApiextensionsV1Api(kube).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        assert crd.spec.names.short_names == ["mp"]
        columns = [c.name for c in crd.spec.versions[0].additional_printer_columns]
        assert columns == ["Phase", "Model", "Candidate", "Reason", "Age"]
    finally:
        objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "with-status")


def test_the_testbed_is_built_from_pinned_versions() -> None:
    bed = load_testbed()
    assert bed.KUBERNETES_VERSION in str(bed.kube_apiserver())
    assert (
        Path(bed.KUBE_MODULE, "go.mod").read_text().count(f"k8s.io/kubernetes {bed.KUBERNETES_VERSION}") == 1
    )


def test_a_name_too_long_for_its_derived_names_is_refused_by_both(kube: Any) -> None:
    too_long = _variant("d" * (PROMOTION_NAME_MAX + 1), lambda s: None)
    accepted, reason = _create(kube, too_long)
    assert not accepted and "metadata.name" in reason, reason
    with pytest.raises(SpecError, match=r"metadata\.name"):
        parse_promotion(too_long)
    longest = _variant("d" * PROMOTION_NAME_MAX, lambda s: None)
    parse_promotion(longest)
    accepted, reason = _create(kube, longest)
    assert accepted, reason
