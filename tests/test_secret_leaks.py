"""No secret value ever reaches what the platform records.

Canary secrets are planted in a real OpenBao; a whole local promotion runs with only a Vault role and
path in its environment (its pipeline steps and servers log in and load the canaries); then every
byte it left behind is scanned: logs, the MLflow store (params, tags, metrics, artifacts), the
status, the events, the rendered Workflow. A positive control proves the canaries were loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import run_cli
from .openbao import Vault, service_account_token
from .test_local_promotion import GOOD_PARAMS, write_promotion

pytestmark = pytest.mark.slow


def _files_containing(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = [needle.decode() for needle in needles if needle in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def test_a_whole_promotion_leaves_no_trace_of_any_secret(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    token = service_account_token(vault, "promoter-pipeline", tmp_path / "sa.jwt")
    for name, value in {
        "VAULT_ADDR": vault.addr,
        "VAULT_ROLE": "promoter-trainer",
        "VAULT_SECRET_PATH": "promoter/trainer",
        "VAULT_AUTH_METHOD": "jwt",
        "VAULT_CREDENTIAL_FILE": str(token),
    }.items():
        monkeypatch.setenv(name, value)
    spec = write_promotion(tmp_path, "canaries", GOOD_PARAMS)
    canaries = [value.encode() for value in vault.canaries.values()]
    probe = tmp_path / "probe" / "planted.bin"  # the scanner itself must find a planted canary
    probe.parent.mkdir()
    probe.write_bytes(b"prefix" + canaries[0] + b"suffix")
    assert _files_containing(probe.parent, canaries) == {"planted.bin": [canaries[0].decode()]}
    try:
        completed = run_cli("run", spec, "--workdir", workdir, "--json")
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["phase"] == "Promoted"

        # positive control: the steps really logged in and loaded the trainer's canary
        train_log = (workdir / "workflows" / "canaries-train" / "steps" / "train" / "log.txt").read_text()
        # (the session's tracking server, if it ran first, added the trainer's MLflow login beside it)
        assert re.search(
            r"loaded \d secret\(s\) \([^)]*mlflow_tracking_token[^)]*\) from secret/promoter/trainer",
            train_log,
        )

        status = run_cli("status", "canaries", "--workdir", workdir, "--json")
        rendered = run_cli("render", spec)
        assert rendered.returncode == 0 and "VAULT_ROLE" in rendered.stdout
        for text in (completed.stdout, completed.stderr, status.stdout, rendered.stdout):
            assert not any(c.decode() in text for c in canaries)
        assert _files_containing(workdir, canaries) == {}
    finally:
        run_cli("down", "--workdir", workdir)
