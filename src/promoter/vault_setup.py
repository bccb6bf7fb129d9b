"""The platform's Vault layout (`manifests/vault/`): each component's role and secret path.

`promoter vault-setup` applies it to a Vault server: an administrator's step, run with an admin
token. Idempotent: applying the same directory twice leaves the server as applying it once. Each
component gets a policy reading only its own KV path and a role (Kubernetes, JWT and AppRole auth)
that grants only that policy.

The operator reads the same layout to tell each workload which role and path are its own (the
trainer's for Workflow steps, the load tester's for load-test Jobs). `manifests/vault` is the one
source: the package ships those very files as package data (pyproject.toml maps `manifests` to
`promoter.manifests`), so an operator image and `promoter render` read exactly what
`promoter vault-setup` applies, and there is no copy to drift.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import yaml
from werkzeug.security import check_password_hash, generate_password_hash

POLICY_PREFIX = "promoter-"
TRAINER, LOADTESTER = "trainer", "loadtester"  # the components whose pods the operator starts
TRACKING = "tracking"  # the MLflow tracking server (`promoter tracking-server`)
# The components that talk to MLflow, each as its own MLflow user. The load tester calls only the
# preview Service and never MLflow, so it has no MLflow user at all.
MLFLOW_COMPONENTS = ("operator", "trainer", "server")
MLFLOW_ADMIN = "promoter-admin"
# Keys in a component's own path (promoter.secrets.CLIENT_ENV hands them to MLflow's client) ...
MLFLOW_USERNAME_KEY, MLFLOW_PASSWORD_KEY = "mlflow_tracking_username", "mlflow_tracking_password"
# ... and in the tracking server's path: never a component's password, only its hash.
ADMIN_USERNAME_KEY, ADMIN_PASSWORD_KEY = "mlflow_admin_username", "mlflow_admin_password"
FLASK_SECRET_KEY, USER_HASHES_KEY = "flask_secret_key", "mlflow_user_password_hashes"
BACKEND_STORE_URI_KEY = "backend_store_uri"
# Where a pod's service-account token for Vault is projected (see `VaultLayout.pod`).
TOKEN_VOLUME, TOKEN_DIRECTORY = "vault-token", "/var/run/secrets/vault"
TOKEN_SECONDS = 3600  # the kubelet renews it before then; the secrets module reads it at each login


@dataclass(frozen=True)
class Component:
    name: str
    service_account: str
    secret_path: str
    policy: str  # HCL

    @property
    def policy_name(self) -> str:
        return f"{POLICY_PREFIX}{self.name}"

    @property
    def role_name(self) -> str:
        """The component's role in every auth method: named like the one policy it grants."""
        return self.policy_name


@dataclass(frozen=True)
class PodIdentity:
    """Who a pod of one component is: its service account and, with Vault, how it logs in there."""

    service_account: str
    env: dict[str, str] = field(default_factory=dict)
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class VaultLayout:
    kv_mount: str
    namespace: str
    audience: str
    token_ttl: str
    token_max_ttl: str
    components: tuple[Component, ...]

    def subject(self, component: Component) -> str:
        """The `sub` claim of the component's service-account tokens."""
        return f"system:serviceaccount:{self.namespace}:{component.service_account}"

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise ValueError(f"roles.yaml has no component {name!r}")

    def pod(self, name: str, vault_addr: str) -> PodIdentity:
        """A pod of component `name`: its service account, its own Vault role and path, never a secret.

        The pod logs in with the Kubernetes auth method. Its roles accept only tokens for the
        layout's audience, which the default service-account token is not (its audience is the API
        server), so the pod gets a projected token for that audience. Nothing here lets it act as
        another component: its role is bound to its service account. Without `vault_addr` the pod
        gets no Vault at all.
        """
        component = self.component(name)
        if not vault_addr:
            return PodIdentity(component.service_account)
        env = {
            "VAULT_ADDR": vault_addr,
            "VAULT_AUTH_METHOD": "kubernetes",
            "VAULT_ROLE": component.role_name,
            "VAULT_SECRET_PATH": component.secret_path,
            "VAULT_KV_MOUNT": self.kv_mount,
            "VAULT_CREDENTIAL_FILE": f"{TOKEN_DIRECTORY}/token",
        }
        token = {"audience": self.audience, "path": "token", "expirationSeconds": TOKEN_SECONDS}
        volume = {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
        mount = {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIRECTORY, "readOnly": True}
        return PodIdentity(component.service_account, env, (volume,), (mount,))


def packaged_layout_directory() -> Path:
    """manifests/vault as installed with the package (see the module's docstring)."""
    return Path(str(resources.files("promoter.manifests").joinpath("vault")))


def load_layout(directory: Path) -> VaultLayout:
    raw: dict[str, Any] = yaml.safe_load((directory / "roles.yaml").read_text())
    components = []
    for name, entry in raw["components"].items():
        policy_file = directory / "policies" / f"{name}.hcl"
        if not policy_file.exists():
            raise ValueError(f"{directory}/roles.yaml: component {name!r} has no {policy_file}")
        components.append(
            Component(name, entry["serviceAccount"], entry["secretPath"], policy_file.read_text())
        )
    return VaultLayout(
        kv_mount=raw.get("kvMount", "secret"),
        namespace=raw["namespace"],
        audience=raw.get("audience", "vault"),
        token_ttl=raw.get("tokenTtl", "15m"),
        token_max_ttl=raw.get("tokenMaxTtl", "4h"),
        components=tuple(components),
    )


def _enable(client: hvac.Client, method: str, path: str) -> None:
    if f"{path}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method(method, path=path)


def apply_layout(
    client: hvac.Client,
    layout: VaultLayout,
    *,
    jwt_public_keys: list[str] | None = None,
    jwt_issuer: str | None = None,
    kubernetes_host: str | None = None,
    kubernetes_ca_pem: str | None = None,
    kubernetes_reviewer_jwt: str | None = None,
) -> dict[str, str]:
    """Policies, then roles for every auth method configured; returns each component's AppRole role id.

    Kubernetes auth: OpenBao checks each login's service-account token with the API server's
    TokenReview, as some identity allowed to (ClusterRole `system:auth-delegator`). With
    `kubernetes_reviewer_jwt` that identity is the reviewer service account whose token it is, and
    OpenBao's own pod token is not used (`disable_local_ca_jwt`): the way for an OpenBao outside the
    cluster, where there is no local token (and, without one, every component's service account
    would need the delegator role itself). Without it, an OpenBao running in the cluster reviews
    with its own pod's token and CA.
    """
    if f"{layout.kv_mount}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path=layout.kv_mount, options={"version": "2"})
    ttl = {"token_ttl": layout.token_ttl, "token_max_ttl": layout.token_max_ttl}
    for component in layout.components:
        client.sys.create_or_update_policy(component.policy_name, component.policy)

    _enable(client, "approle", "approle")
    role_ids = {}
    for component in layout.components:
        client.auth.approle.create_or_update_approle(
            component.role_name, token_policies=[component.policy_name], **ttl
        )
        role_ids[component.name] = client.auth.approle.read_role_id(component.role_name)["data"]["role_id"]

    if jwt_public_keys:
        _enable(client, "jwt", "jwt")
        client.auth.jwt.configure(jwt_validation_pubkeys=jwt_public_keys, bound_issuer=jwt_issuer, path="jwt")
        for component in layout.components:
            client.auth.jwt.create_role(
                component.role_name,
                user_claim="sub",
                allowed_redirect_uris=[],
                role_type="jwt",
                bound_subject=layout.subject(component),
                bound_audiences=[layout.audience],
                token_policies=[component.policy_name],
                path="jwt",
                **ttl,
            )

    if kubernetes_host:
        _enable(client, "kubernetes", "kubernetes")
        client.auth.kubernetes.configure(
            kubernetes_host,
            kubernetes_ca_cert=kubernetes_ca_pem,
            token_reviewer_jwt=kubernetes_reviewer_jwt,
            disable_local_ca_jwt=kubernetes_reviewer_jwt is not None,
        )
        for component in layout.components:
            client.auth.kubernetes.create_role(
                component.role_name,
                bound_service_account_names=[component.service_account],
                bound_service_account_namespaces=[layout.namespace],
                audience=layout.audience,
                policies=[component.policy_name],
                # hvac's kubernetes create_role names them ttl/max_ttl (the token_* fields of the
                # other methods are refused as unexpected keywords)
                ttl=layout.token_ttl,
                max_ttl=layout.token_max_ttl,
            )
    return role_ids


def mlflow_username(component: str) -> str:
    return f"{POLICY_PREFIX}{component}"


def _read_kv(client: hvac.Client, layout: VaultLayout, path: str) -> tuple[dict[str, str], int]:
    """The secret at `path` and its version (0: none yet, the `cas` that creates it)."""
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=layout.kv_mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return {}, 0
    return dict(answer["data"]["data"]), int(answer["data"]["metadata"]["version"])


def _merge_kv(client: hvac.Client, layout: VaultLayout, path: str, new: dict[str, str]) -> bool:
    """Add `new` to the keys at `path`, keeping every other key; writes nothing when nothing changes.

    Written with check-and-set on the version read, so a concurrent writer is an error, never a
    silently lost key. Returns whether a new version was written.
    """
    current, version = _read_kv(client, layout, path)
    merged = {**current, **new}
    if merged == current:
        return False
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret=merged, cas=version, mount_point=layout.kv_mount
    )
    return True


def _password() -> str:
    return secrets.token_urlsafe(32)


def provision_mlflow_users(
    client: hvac.Client,
    layout: VaultLayout,
    *,
    rotate: bool = False,
    backend_store_uri: str | None = None,
) -> dict[str, str]:
    """Give each MLflow component its own MLflow user, and the tracking server what it needs to create them.

    Each component's password is generated here and written only into that component's own path
    (`mlflow_tracking_username` / `mlflow_tracking_password`, merged with the keys already there).
    The tracking server's path gets the admin password, a static Flask secret key (CSRF across
    workers) and each user's password *hash* (werkzeug's, the format MLflow's auth store keeps), so
    the server can create the users before it serves without ever holding their passwords.
    Idempotent: an existing password is kept (`rotate` replaces the components' passwords), and a
    hash that still matches is kept, so a second run writes no new secret version. Returns each
    component's username; no password leaves this function.
    """
    hashes: dict[str, str] = {}
    tracking_path = layout.component(TRACKING).secret_path
    tracking, _ = _read_kv(client, layout, tracking_path)
    old_hashes: dict[str, str] = json.loads(tracking.get(USER_HASHES_KEY, "{}"))
    users = {}
    for name in MLFLOW_COMPONENTS:
        path = layout.component(name).secret_path
        current, _ = _read_kv(client, layout, path)
        username = mlflow_username(name)
        password = current.get(MLFLOW_PASSWORD_KEY)
        if rotate or not password:
            password = _password()
        _merge_kv(client, layout, path, {MLFLOW_USERNAME_KEY: username, MLFLOW_PASSWORD_KEY: password})
        old = old_hashes.get(username)
        hashes[username] = (
            old if old and check_password_hash(old, password) else generate_password_hash(password)
        )
        users[name] = username
    tracking_keys = {
        ADMIN_USERNAME_KEY: tracking.get(ADMIN_USERNAME_KEY, MLFLOW_ADMIN),
        ADMIN_PASSWORD_KEY: tracking.get(ADMIN_PASSWORD_KEY) or _password(),
        FLASK_SECRET_KEY: tracking.get(FLASK_SECRET_KEY) or _password(),
        USER_HASHES_KEY: json.dumps(hashes, sort_keys=True),
    }
    if backend_store_uri:
        tracking_keys[BACKEND_STORE_URI_KEY] = backend_store_uri
    _merge_kv(client, layout, tracking_path, tracking_keys)
    return users
