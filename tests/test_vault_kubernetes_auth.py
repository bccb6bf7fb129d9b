"""OpenBao's Kubernetes auth method against the test bed's real kube-apiserver.

`promoter vault-setup --kubernetes-host/--kubernetes-ca-file/--kubernetes-reviewer-jwt-file`
configures it as an administrator would; each component then logs in through the product's own
path (promoter.secrets, VAULT_AUTH_METHOD=kubernetes with a token file) with a service-account token
the API server minted (TokenRequest, audience `vault`), which OpenBao checks with the API server's
TokenReview, as a reviewer service account bound to ClusterRole system:auth-delegator (what the
chart ships: see `REVIEWER`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.secrets import SecretStore, VaultDenied, VaultSettings

from .kube import TOKEN_REVIEWER as REVIEWER
from .kube import bind_token_reviewer, ensure_service_account, mint
from .openbao import Vault, wait_until

PROMOTER = Path(sys.executable).parent / "promoter"
COMPONENTS = ("operator", "trainer", "server", "loadtester", "tracking")


@pytest.fixture(scope="module")
def kubernetes_auth(
    vault: Vault, control_plane: Any, kube: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """The layout's namespace and service accounts in the API server; OpenBao's kubernetes method set up."""
    core = client.CoreV1Api(kube)
    namespace = vault.layout.namespace
    try:
        core.create_namespace(client.V1Namespace(metadata={"name": namespace}))
    except ApiException as exc:
        if exc.status != 409:
            raise
    for component in vault.layout.components:
        ensure_service_account(core, namespace, component.service_account)
    ensure_service_account(core, namespace, REVIEWER)
    bind_token_reviewer(kube, namespace, REVIEWER)
    directory = tmp_path_factory.mktemp("kubernetes-auth")
    reviewer = directory / "reviewer.jwt"
    reviewer.write_text(mint(core, namespace, REVIEWER, None))  # the API server's own audience
    env = {**os.environ, "VAULT_ADDR": vault.addr, "VAULT_TOKEN": "root"}
    setup = subprocess.run(
        [
            str(PROMOTER),
            "vault-setup",
            "--kubernetes-host",
            control_plane.server,
            "--kubernetes-ca-file",
            str(control_plane.ca_file),
            "--kubernetes-reviewer-jwt-file",
            str(reviewer),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert reviewer.read_text() not in setup.stdout + setup.stderr
    return core


def store(vault: Vault, role_of: str, path_of: str, token: str, tmp_path: Path) -> SecretStore:
    """The product's login path: VAULT_AUTH_METHOD=kubernetes with the token in VAULT_CREDENTIAL_FILE."""
    file = tmp_path / f"{role_of}-{path_of}.jwt"
    file.write_text(token)
    settings = VaultSettings(
        addr=vault.addr,
        role=vault.layout.component(role_of).role_name,
        secret_path=vault.layout.component(path_of).secret_path,
        auth_method="kubernetes",
        credential_file=file,
    )
    return SecretStore(settings, retry_seconds=5)


@pytest.mark.parametrize("who", COMPONENTS)
def test_each_component_logs_in_with_its_api_server_token_and_reads_only_its_own_path(
    vault: Vault, kubernetes_auth: Any, who: str, tmp_path: Path
) -> None:
    component = vault.layout.component(who)
    token = mint(kubernetes_auth, vault.layout.namespace, component.service_account, [vault.layout.audience])
    own = store(vault, who, who, token, tmp_path)
    assert own.get("mlflow_tracking_token") == vault.canaries[who]
    assert own.logins == 1
    for other in COMPONENTS:
        if other != who:
            with pytest.raises(VaultDenied, match=f"may not read secret/promoter/{other}"):
                store(vault, who, other, token, tmp_path).read()
            # and its token is no key to another component's role
            with pytest.raises(VaultDenied, match=r"kubernetes login as role .* was refused"):
                store(vault, other, other, token, tmp_path).read()


def test_a_token_for_another_audience_is_refused(vault: Vault, kubernetes_auth: Any, tmp_path: Path) -> None:
    trainer = vault.layout.component("trainer")
    namespace = vault.layout.namespace
    default_audience = mint(kubernetes_auth, namespace, trainer.service_account, None)  # the API server's
    with pytest.raises(VaultDenied, match="kubernetes login as role 'promoter-trainer' was refused"):
        store(vault, "trainer", "trainer", default_audience, tmp_path).read()
    other = mint(kubernetes_auth, namespace, trainer.service_account, ["not-vault"])
    with pytest.raises(VaultDenied, match="was refused"):
        store(vault, "trainer", "trainer", other, tmp_path).read()
    right = mint(kubernetes_auth, namespace, trainer.service_account, [vault.layout.audience])
    assert store(vault, "trainer", "trainer", right, tmp_path).get("mlflow_tracking_token")  # the control


def test_a_token_of_a_deleted_service_account_is_refused(
    vault: Vault, kubernetes_auth: Any, tmp_path: Path
) -> None:
    namespace = vault.layout.namespace
    loadtester = vault.layout.component("loadtester")
    token = mint(kubernetes_auth, namespace, loadtester.service_account, [vault.layout.audience])
    assert store(vault, "loadtester", "loadtester", token, tmp_path).get("mlflow_tracking_token")
    kubernetes_auth.delete_namespaced_service_account(loadtester.service_account, namespace)
    try:
        # not at once: the API server caches a token's successful authentication (about 10 s here)
        # and looks service accounts up through its informer
        assert wait_until(lambda: refused(vault, token, tmp_path), 15), (
            "the deleted account's token still logs in"
        )
        # a new service account of the same name is another identity (another UID): still refused
        ensure_service_account(kubernetes_auth, namespace, loadtester.service_account)
        time.sleep(2)
        assert refused(vault, token, tmp_path)
    finally:
        ensure_service_account(kubernetes_auth, namespace, loadtester.service_account)


def refused(vault: Vault, token: str, tmp_path: Path) -> bool:
    try:
        store(vault, "loadtester", "loadtester", token, tmp_path).read()
    except VaultDenied as exc:
        assert "kubernetes login as role 'promoter-loadtester' was refused" in str(exc)
        return True
    return False
