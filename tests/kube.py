"""A real kube-apiserver (dev/testbed.py) with the ModelPromotion CRD installed, for tests."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from promoter.crd import GROUP, PLURAL

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "charts" / "promoter" / "crds" / "modelpromotion.yaml"


def load_testbed() -> ModuleType:
    """dev/testbed.py is a script, not part of the package: load it by path (once)."""
    if "promoter_testbed" not in sys.modules:
        spec = importlib.util.spec_from_file_location("promoter_testbed", REPO / "dev" / "testbed.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["promoter_testbed"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["promoter_testbed"]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh test bed (dev/testbed.py) for the session. No skip: a failed build fails."""
    bed = load_testbed()
    bed.build()
    directory = tmp_path_factory.mktemp("testbed")
    plane = bed.up(directory)
    try:
        yield plane
    finally:
        bed.down(directory)


@pytest.fixture(scope="session")
def kube(control_plane: Any) -> Any:
    """An ApiClient (the admin) for the test bed, with the ModelPromotion CRD installed."""
    from kubernetes import client, config, utils

    api: Any = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    utils.create_from_yaml(api, str(CRD_FILE))  # type: ignore[no-untyped-call]
    extensions: Any = client.ApiextensionsV1Api(api)
    for _ in range(100):
        crd = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            break
        time.sleep(0.1)
    return api


def impersonating(kube: Any, user: str) -> Any:
    """An ApiClient whose every request the API server authorizes as `user`."""
    from kubernetes import client

    api = client.ApiClient(configuration=kube.configuration)
    api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
    return api


# The account OpenBao reviews logins as (TokenReview): the chart's `vault.reviewer` plays this part.
TOKEN_REVIEWER = "promoter-vault-reviewer"


def create_unless_present(api: Any, document: dict[str, Any]) -> None:
    """Create `document`; one that already exists (409) is fine (a session's test bed is shared)."""
    from kubernetes import utils
    from kubernetes.client.exceptions import ApiException

    try:
        utils.create_from_dict(api, document)  # type: ignore[no-untyped-call]
    except utils.FailToCreateError as exc:
        if not all(isinstance(e, ApiException) and e.status == 409 for e in exc.api_exceptions):
            raise


def ensure_service_account(core: Any, namespace: str, name: str) -> None:
    create_unless_present(
        core.api_client,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
    )


def bind_token_reviewer(api: Any, namespace: str, account: str = TOKEN_REVIEWER) -> None:
    """Let `account` review tokens (ClusterRole system:auth-delegator), as OpenBao's reviewer must."""
    create_unless_present(
        api,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{namespace}-{account}-auth-delegator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )


def mint(
    core: Any, namespace: str, service_account: str, audiences: list[str] | None, seconds: int = 600
) -> str:
    """A token the API server signs for `service_account` (TokenRequest), for `audiences` (None or
    empty: the API server's own), as the kubelet asks for a projected token."""
    from kubernetes import client

    spec = client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=seconds)
    answer = core.create_namespaced_service_account_token(
        service_account, namespace, client.AuthenticationV1TokenRequest(spec=spec)
    )
    return str(answer.status.token)
