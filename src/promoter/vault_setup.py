"""Apply the platform's Vault policies and auth roles (`manifests/vault/`) to a Vault server.

An administrator's step, run with an admin token: `promoter vault-setup`. Idempotent: applying the
same directory twice leaves the server as applying it once. Each component gets a policy reading
only its own KV path and a role (Kubernetes, JWT and AppRole auth) that grants only that policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import yaml

POLICY_PREFIX = "promoter-"


@dataclass(frozen=True)
class Component:
    name: str
    service_account: str
    secret_path: str
    policy: str  # HCL

    @property
    def policy_name(self) -> str:
        return f"{POLICY_PREFIX}{self.name}"


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
) -> dict[str, str]:
    """Policies, then roles for every auth method configured; returns each component's AppRole role id."""
    if f"{layout.kv_mount}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path=layout.kv_mount, options={"version": "2"})
    ttl = {"token_ttl": layout.token_ttl, "token_max_ttl": layout.token_max_ttl}
    for component in layout.components:
        client.sys.create_or_update_policy(component.policy_name, component.policy)

    _enable(client, "approle", "approle")
    role_ids = {}
    for component in layout.components:
        client.auth.approle.create_or_update_approle(
            component.policy_name, token_policies=[component.policy_name], **ttl
        )
        role_ids[component.name] = client.auth.approle.read_role_id(component.policy_name)["data"]["role_id"]

    if jwt_public_keys:
        _enable(client, "jwt", "jwt")
        client.auth.jwt.configure(jwt_validation_pubkeys=jwt_public_keys, bound_issuer=jwt_issuer, path="jwt")
        for component in layout.components:
            client.auth.jwt.create_role(
                component.policy_name,
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
        client.auth.kubernetes.configure(kubernetes_host, kubernetes_ca_cert=kubernetes_ca_pem)
        for component in layout.components:
            client.auth.kubernetes.create_role(
                component.policy_name,
                bound_service_account_names=[component.service_account],
                bound_service_account_namespaces=[layout.namespace],
                audience=layout.audience,
                policies=[component.policy_name],
                **ttl,
            )
    return role_ids
