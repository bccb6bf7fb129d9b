"""Secrets come from Vault (or OpenBao), through hvac, and from nowhere else.

A process is configured with VAULT_ADDR, VAULT_ROLE and VAULT_SECRET_PATH (plus the auth method and
mount). In a pod it logs in with the Kubernetes auth method using its projected service-account
token; outside a cluster with a JWT, an AppRole secret id file or a token file. Every value it loads
is registered for redaction by value, so a secret that reaches a log line, an MLflow param or an
event text is masked even where no key name gives it away.

The token is renewed before it expires (and replaced by a new login when it cannot be renewed), so a
long step never sees an expired token; a Vault that is briefly unreachable is retried with backoff,
and one that stays down gives an error naming the address and for how long it was tried.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import hvac
import hvac.exceptions
import requests
from pydantic_settings import SettingsConfigDict

from promoter.redaction import install_log_redaction, register_secret_value
from promoter.settings import EnvSettings

log = logging.getLogger("promoter.secrets")
AuthMethod = Literal["kubernetes", "jwt", "approle", "token"]
# Secret keys handed to the clients that read them from their process environment.
CLIENT_ENV = {
    "mlflow_tracking_token": "MLFLOW_TRACKING_TOKEN",
    "mlflow_tracking_username": "MLFLOW_TRACKING_USERNAME",
    "mlflow_tracking_password": "MLFLOW_TRACKING_PASSWORD",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}
# Keys stored beside the secrets but not secret themselves, so not masked by value: an MLflow user
# name is `promoter-<component>`, the component's role name too, and masking it would turn every
# "as role promoter-trainer" and every alias move's author into "***".
NOT_SECRET = frozenset({"mlflow_tracking_username"})
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_T = TypeVar("_T")


class VaultError(RuntimeError):
    """Vault answered, but not with the secret (misconfiguration, missing path)."""


class VaultDenied(VaultError):
    pass


class VaultUnavailable(VaultError):
    pass


class VaultSettings(EnvSettings):
    """Where and who: never a secret itself (credentials are read from files, at login).

    Read from Vault's own variables (VAULT_ADDR, VAULT_ROLE, VAULT_SECRET_PATH, VAULT_AUTH_METHOD,
    VAULT_AUTH_MOUNT, VAULT_KV_MOUNT, VAULT_CREDENTIAL_FILE), the names the platform documents for
    every component: each process is given its own component's values, and nothing else.
    """

    model_config = SettingsConfigDict(env_prefix="VAULT_")

    addr: str
    role: str  # the auth role (for AppRole: the role id)
    secret_path: str  # KV v2 path under `kv_mount`, e.g. promoter/trainer
    auth_method: AuthMethod = "kubernetes"
    auth_mount: str = ""  # default: the method's name
    kv_mount: str = "secret"
    credential_file: Path = SERVICE_ACCOUNT_TOKEN  # JWT, AppRole secret id or token, by method


_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
)


class SecretStore:
    """The secrets at one path, for one role; cached, and fetched again after `cache_seconds`."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        retry_seconds: float = 30.0,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.retry_seconds = retry_seconds
        self.cache_seconds = cache_seconds
        self._clock, self._sleep = clock, sleep
        self._client = hvac.Client(url=settings.addr, timeout=5)
        self._token_expires = 0.0
        self._token_ttl = 0.0
        self._renewable = False
        self._cached: dict[str, str] | None = None
        self._cached_at = 0.0
        self.logins = 0  # observable: how often the store had to log in again
        self.renewals = 0

    @classmethod
    def from_env(cls) -> SecretStore:
        """The store this process's Vault variables describe; a bad one raises `SettingsError`."""
        return cls(VaultSettings.load())

    def get(self, key: str) -> str:
        secrets = self.read()
        if key not in secrets:
            raise VaultError(f"{self.settings.kv_mount}/{self.settings.secret_path} has no key {key!r}")
        return secrets[key]

    def describe(self) -> str:
        """Which keys came from where, as whom: names only, never a value (for logs and stderr)."""
        keys = sorted(self.read())
        settings = self.settings
        return (
            f"loaded {len(keys)} secret(s) ({', '.join(keys)}) from {settings.kv_mount}/"
            f"{settings.secret_path} as role {settings.role}"
        )

    def read(self) -> dict[str, str]:
        if self._cached is not None and self._clock() - self._cached_at < self.cache_seconds:
            return dict(self._cached)
        data = self._retrying(self._read_once)
        for key, value in data.items():
            if key not in NOT_SECRET:
                register_secret_value(value)
        self._cached, self._cached_at = data, self._clock()
        return dict(data)

    # internals

    def _read_once(self) -> dict[str, str]:
        self._ensure_token()
        settings = self.settings
        read = self._client.secrets.kv.v2.read_secret_version
        where = {
            "path": settings.secret_path,
            "mount_point": settings.kv_mount,
            "raise_on_deleted_version": True,
        }
        try:
            try:
                answer = read(**where)
            except hvac.exceptions.Forbidden:
                # A token that expired or was revoked under us also reads as 403: one fresh login
                # before the denial is believed.
                self._login()
                answer = read(**where)
        except hvac.exceptions.Forbidden:
            raise VaultDenied(
                f"role {settings.role!r} may not read {settings.kv_mount}/{settings.secret_path}"
            ) from None
        except hvac.exceptions.InvalidPath:
            raise VaultError(f"no secret at {settings.kv_mount}/{settings.secret_path}") from None
        return {str(key): str(value) for key, value in answer["data"]["data"].items()}

    def _ensure_token(self) -> None:
        now = self._clock()
        if now < self._token_expires - self._token_ttl / 3:
            return
        if self._renewable and now < self._token_expires:
            try:
                auth = self._client.auth.token.renew_self()["auth"]
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                pass  # at its max TTL, or revoked: log in again below
            else:
                self.renewals += 1
                self._remember(auth["lease_duration"], auth["renewable"])
                return
        self._login()

    def _login(self) -> None:
        settings = self.settings
        mount = settings.auth_mount or settings.auth_method
        try:
            credential = settings.credential_file.read_text().strip()
        except OSError as exc:
            raise VaultError(
                f"cannot read the {settings.auth_method} credential file: {exc.strerror}"
            ) from None
        auth = self._client.auth
        try:
            if settings.auth_method == "kubernetes":
                answer = auth.kubernetes.login(settings.role, credential, mount_point=mount)
            elif settings.auth_method == "jwt":
                answer = auth.jwt.jwt_login(settings.role, credential, path=mount)
            elif settings.auth_method == "approle":
                answer = auth.approle.login(settings.role, credential, mount_point=mount)
            else:
                self._client.token = credential
                answer = {"auth": self._client.auth.token.lookup_self()["data"]}
                answer["auth"]["lease_duration"] = answer["auth"]["ttl"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest, hvac.exceptions.Unauthorized):
            raise VaultDenied(f"{settings.auth_method} login as role {settings.role!r} was refused") from None
        self.logins += 1
        self._remember(answer["auth"]["lease_duration"], answer["auth"]["renewable"])

    def _remember(self, ttl_seconds: float, renewable: bool) -> None:
        # ttl 0 is a root-like token that never expires
        self._token_ttl = float(ttl_seconds) if ttl_seconds else float("inf")
        self._token_expires = self._clock() + self._token_ttl
        self._renewable = bool(renewable)

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        deadline = self._clock() + self.retry_seconds
        delay, attempts = 0.2, 0
        while True:
            attempts += 1
            try:
                return attempt()
            except _TRANSIENT as exc:
                if self._clock() + delay > deadline:
                    raise VaultUnavailable(
                        f"Vault at {self.settings.addr} unreachable for {self.retry_seconds:.0f}s "
                        f"({attempts} attempts; last: {type(exc).__name__})"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 5.0)


def load_process_secrets() -> SecretStore | None:
    """When this process is configured for Vault, load its secrets and hand them to their clients.

    Values go straight into this process (MLflow and boto3 read their credentials from it) and into
    the redaction of every log handler; only key names are ever logged. Without VAULT_ADDR nothing
    happens: local runs against a SQLite store need no credentials.
    """
    if not os.environ.get("VAULT_ADDR"):
        return None
    store = SecretStore.from_env()
    secrets = store.read()
    install_log_redaction()
    for key, variable in CLIENT_ENV.items():
        if key in secrets:
            os.environ[variable] = secrets[key]
    log.info("%s", store.describe())
    return store
