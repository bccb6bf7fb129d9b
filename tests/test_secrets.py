"""Secrets against a real OpenBao server (`bao server -dev`, Vault-API compatible): the policies and
roles of manifests/vault applied as an administrator would, then each component logging in."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from promoter.local.rollout import free_port
from promoter.secrets import SecretStore, VaultDenied, VaultError, VaultSettings, VaultUnavailable
from promoter.serving.client import get_json
from promoter.settings import SettingsError

from .conftest import run_cli
from .openbao import Vault, service_account_token, wait_until


def component(vault: Vault, name: str) -> tuple[str, str]:
    found = next(c for c in vault.layout.components if c.name == name)
    return found.service_account, found.secret_path


def jwt_store(vault: Vault, who: str, reads: str, tmp_path: Path) -> SecretStore:
    service_account, _ = component(vault, who)
    _, path = component(vault, reads)
    token = service_account_token(vault, service_account, tmp_path / f"{who}.jwt")
    settings = VaultSettings(
        addr=vault.addr, role=f"promoter-{who}", secret_path=path, auth_method="jwt", credential_file=token
    )
    return SecretStore(settings)


COMPONENTS = ["operator", "trainer", "server", "loadtester", "tracking"]


@pytest.mark.parametrize("who", COMPONENTS)
def test_each_component_reads_its_own_secrets_and_no_one_elses(
    vault: Vault, who: str, tmp_path: Path
) -> None:
    assert jwt_store(vault, who, who, tmp_path).get("mlflow_tracking_token") == vault.canaries[who]
    for other in COMPONENTS:
        if other != who:
            with pytest.raises(VaultDenied, match=f"may not read secret/promoter/{other}"):
                jwt_store(vault, who, other, tmp_path).read()


def test_a_service_account_token_cannot_log_in_as_another_component(vault: Vault, tmp_path: Path) -> None:
    token = service_account_token(vault, "promoter-serving", tmp_path / "server.jwt")
    settings = VaultSettings(
        addr=vault.addr,
        role="promoter-trainer",
        secret_path="promoter/trainer",
        auth_method="jwt",
        credential_file=token,
    )
    with pytest.raises(VaultDenied, match="login as role 'promoter-trainer' was refused"):
        SecretStore(settings).read()


def test_a_token_for_another_audience_is_refused(vault: Vault, tmp_path: Path) -> None:
    token = service_account_token(vault, "promoter-pipeline", tmp_path / "t.jwt", audience="kubernetes")
    settings = VaultSettings(
        addr=vault.addr,
        role="promoter-trainer",
        secret_path="promoter/trainer",
        auth_method="jwt",
        credential_file=token,
    )
    with pytest.raises(VaultDenied):
        SecretStore(settings).read()


def test_approle_login_for_development_outside_a_cluster(vault: Vault, tmp_path: Path) -> None:
    secret_id = vault.admin.auth.approle.generate_secret_id("promoter-trainer")["data"]["secret_id"]
    (tmp_path / "secret-id").write_text(secret_id)
    settings = VaultSettings(
        addr=vault.addr,
        role=vault.role_ids["trainer"],
        secret_path="promoter/trainer",
        auth_method="approle",
        credential_file=tmp_path / "secret-id",
    )
    assert SecretStore(settings).get("mlflow_tracking_token") == vault.canaries["trainer"]
    other = settings.model_copy(update={"secret_path": "promoter/server"})  # same login, another path
    with pytest.raises(VaultDenied):
        SecretStore(other).read()


def test_a_token_expiring_mid_run_is_renewed_without_the_caller_noticing(
    vault: Vault, tmp_path: Path
) -> None:
    vault.admin.auth.approle.create_or_update_approle(
        "short-lived", token_policies=["promoter-trainer"], token_ttl="2s", token_max_ttl="5s"
    )
    role_id = vault.admin.auth.approle.read_role_id("short-lived")["data"]["role_id"]
    secret_id = vault.admin.auth.approle.generate_secret_id("short-lived")["data"]["secret_id"]
    (tmp_path / "secret-id").write_text(secret_id)
    settings = VaultSettings(
        addr=vault.addr,
        role=role_id,
        secret_path="promoter/trainer",
        auth_method="approle",
        credential_file=tmp_path / "secret-id",
    )
    store = SecretStore(settings, cache_seconds=0)  # every read goes to Vault with the current token

    deadline = time.monotonic() + 9  # past the token's TTL and its max TTL
    while time.monotonic() < deadline:
        assert store.get("mlflow_tracking_token") == vault.canaries["trainer"]
        time.sleep(0.3)
    assert store.renewals >= 1  # renewed while it could be
    assert store.logins >= 2  # and logged in again once it could not


def _proxy(port: int, target: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "promoter.local.proxy", str(port), str(target)])
    assert wait_until(lambda: get_json(f"http://127.0.0.1:{port}/v1/sys/health") is not None, 10)
    return process


def test_vault_down_gives_a_clear_error_then_recovers(vault: Vault, tmp_path: Path) -> None:
    """Vault reached through a switchable proxy: stopping the proxy is Vault going away."""
    target = tmp_path / "target"
    target.write_text(vault.addr.removeprefix("http://"))
    port = free_port()
    proxy = _proxy(port, target)
    service_account, path = component(vault, "trainer")
    token = service_account_token(vault, service_account, tmp_path / "t.jwt")
    addr = f"http://127.0.0.1:{port}"
    settings = VaultSettings(
        addr=addr, role="promoter-trainer", secret_path=path, auth_method="jwt", credential_file=token
    )
    store = SecretStore(settings, cache_seconds=0, retry_seconds=2)
    try:
        assert store.get("mlflow_tracking_token") == vault.canaries["trainer"]

        proxy.terminate()
        proxy.wait()
        with pytest.raises(VaultUnavailable, match=rf"Vault at {addr} unreachable for 2s"):
            store.read()

        # back within the retry window: the caller only sees a slower read
        patient = SecretStore(settings, cache_seconds=0, retry_seconds=20)
        restart = threading.Timer(1.0, lambda: _proxy(port, target))
        restart.start()
        assert patient.get("mlflow_tracking_token") == vault.canaries["trainer"]
        restart.join()
        assert store.get("mlflow_tracking_token") == vault.canaries["trainer"]  # and the first one recovers
    finally:
        subprocess.run(["pkill", "-f", f"promoter.local.proxy {port}"], check=False)


def test_settings_name_each_bad_variable_and_never_echo_its_value(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VAULT_ADDR", "VAULT_SECRET_PATH", "VAULT_AUTH_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ROLE", "")  # a manifest's empty value is no role
    with pytest.raises(SettingsError) as unset:
        VaultSettings.load()
    assert str(unset.value) == "VAULT_ADDR is not set; VAULT_ROLE is not set; VAULT_SECRET_PATH is not set"

    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("VAULT_ROLE", "promoter-trainer")
    monkeypatch.setenv("VAULT_SECRET_PATH", "promoter/trainer")
    monkeypatch.setenv("VAULT_AUTH_METHOD", vault.canaries["trainer"])  # a secret in the wrong variable
    with pytest.raises(SettingsError) as wrong:
        SecretStore.from_env()
    assert str(wrong.value) == "VAULT_AUTH_METHOD: Input should be 'kubernetes', 'jwt', 'approle' or 'token'"


def test_serve_refuses_a_bad_vault_variable_by_name_without_a_traceback(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("VAULT_ROLE", "promoter-server")
    monkeypatch.setenv("VAULT_SECRET_PATH", "promoter/server")
    monkeypatch.setenv("VAULT_AUTH_METHOD", "ldap")
    result = run_cli("serve", "--model-uri", "models:/digits/1")
    assert result.returncode == 2, result.stderr
    assert "VAULT_AUTH_METHOD" in result.stderr and "Traceback" not in result.stderr


def test_the_load_tester_logs_in_as_itself_and_a_refused_login_writes_no_result(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`promoter load-test` (the load-test Job) reads its own path before it loads anything; a token
    of another component is refused, and then no result is written (a crash is never a pass)."""
    profile = '{"users": 1, "spawnRate": 1, "duration": "1s"}'
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("VAULT_ROLE", "promoter-loadtester")
    monkeypatch.setenv("VAULT_SECRET_PATH", "promoter/loadtester")
    monkeypatch.setenv("VAULT_AUTH_METHOD", "jwt")
    for who, service_account in (("server", "promoter-serving"), ("loadtester", "promoter-loadtest")):
        token = service_account_token(vault, service_account, tmp_path / f"{who}.jwt")
        monkeypatch.setenv("VAULT_CREDENTIAL_FILE", str(token))
        # nothing listens on port 1: a login that works still ends in a failed load test
        done = run_cli(
            "load-test", "--host", "http://127.0.0.1:1", "--profile", profile, "--result-file", result_file
        )
        assert done.returncode == 1 and not result_file.exists(), done.stderr
        assert vault.canaries["loadtester"] not in done.stdout + done.stderr
        login = "(mlflow_tracking_token) from secret/promoter/loadtester as role promoter-loadtester"
        assert (login in done.stderr) is (who == "loadtester"), done.stderr


def test_missing_keys_never_show_the_secrets_that_are_there(vault: Vault, tmp_path: Path) -> None:
    store = jwt_store(vault, "trainer", "trainer", tmp_path)
    with pytest.raises(VaultError) as missing:
        store.get("no_such_key")
    assert vault.canaries["trainer"] not in str(missing.value)


def test_the_kv_layout_matches_the_policies(vault: Vault) -> None:
    """Each policy file names its component's own path, and only that path."""
    for item in vault.layout.components:
        assert f'path "{vault.layout.kv_mount}/data/{item.secret_path}"' in item.policy
        assert item.policy.count("path ") == 1


def test_vault_setup_applies_the_layout_idempotently_and_needs_an_admin(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    refused = run_cli("vault-setup")
    assert refused.returncode == 2 and "VAULT_TOKEN" in refused.stderr

    monkeypatch.setenv("VAULT_TOKEN", "root")
    applied = run_cli("vault-setup")  # the fixture applied it already: a second time changes nothing
    assert applied.returncode == 0, applied.stderr
    assert "trainer: policy promoter-trainer reads secret/promoter/trainer" in applied.stdout
    assert f"AppRole role id {vault.role_ids['trainer']}" in applied.stdout
    policy = vault.admin.sys.read_policy("promoter-trainer")["data"]["rules"]
    assert 'path "secret/data/promoter/trainer"' in policy
