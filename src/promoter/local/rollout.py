"""Blue/green on loopback, with the semantics of an Argo Rollout (blueGreen, no auto-promotion).

Each model version is served by its own `promoter serve` process. The preview address is the
candidate's server itself; the active address is a proxy (the stable "active Service") that switches
to the new server only at promotion. The server it replaces stays up as the hot rollback target;
older ones are retired. State lives in `WORKDIR/rollouts/NAME/state.json`; the processes outlive
`promoter run` (they are production), `promoter down` stops them and `promoter up` starts them again.

Every process binds a port the OS picks (port 0) and writes it to a port file: a port chosen in
advance ("free now") can be taken by another process before the server binds it, which failed a
promotion whenever the machine was busy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promoter.local.identities import SERVER, child_env
from promoter.local.store import replace_file
from promoter.pipelines.tracking import TRACKING_ENV
from promoter.promotion.engine import PreviewObservation
from promoter.serving.client import get_json, served_version

SERVER_START_SECONDS = 180.0
PROXY_START_SECONDS = 60.0  # a small process, but Python starts slowly on a busy machine
STOP_GRACE_SECONDS = 30.0
_LOG_TAIL_LINES = 15


class RolloutError(RuntimeError):
    pass


@dataclass
class Process:
    pid: int
    port: int  # 0 until the process has bound its port and written it to its port file

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class RolloutState:
    model: str = ""
    proxy: Process | None = None
    servers: dict[str, Process] = field(default_factory=dict)
    active: str | None = None
    previous: str | None = None
    preview: str | None = None
    # the active address's port, kept by `promoter down` so that `promoter up` serves at the same one
    address_port: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RolloutState:
        proxy = Process(**raw["proxy"]) if raw.get("proxy") else None
        servers = {version: Process(**p) for version, p in raw.get("servers", {}).items()}
        return cls(
            raw.get("model", ""),
            proxy,
            servers,
            raw.get("active"),
            raw.get("previous"),
            raw.get("preview"),
            raw.get("address_port") or (proxy.port if proxy else 0),
        )


# How the children this process started and reaped ended: an exit status can be read only once.
_EXIT_CODES: dict[int, int] = {}


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:  # our child, and it has exited
            _EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal check
    # Empty for a moment while a process just started is still in exec(): reading that as "exited"
    # failed promotions on busy machines ("the preview server exited", with an empty log).
    return not command_line or b"promoter" in command_line


def _stop(process: Process) -> None:
    if not _alive(process.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)  # graceful: in-flight requests finish
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        if _alive(process.pid):
            os.kill(process.pid, signal.SIGKILL)


def _how_it_ended(pid: int) -> str:
    code = _EXIT_CODES.get(pid)
    if code is None:
        return "exited"  # started by another process: its exit status went to that one
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _read_port(port_file: Path) -> int:
    """The port a process wrote once it was bound; 0 while it has not (yet)."""
    try:
        return int(port_file.read_text())
    except (OSError, ValueError):
        return 0


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's pick; a tiny race is accepted)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRollouts:
    def __init__(self, workdir: Path, tracking_uri: str, serve_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.serve_args = serve_args

    def directory(self, rollout: str) -> Path:
        return self.workdir / "rollouts" / rollout

    # the Rollouts port

    def deploy_preview(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        """`image` is ignored: on one machine every server runs this installation of promoter."""
        with self._state(rollout) as state:
            state.model = model
            self._ensure_proxy(rollout, state)
            if state.preview not in (None, version):
                self._retire_preview(state)
            self._ensure_server(rollout, state, model, version)
            state.preview = version

    def preview(self, rollout: str) -> PreviewObservation | None:
        with self._state(rollout) as state:
            if state.preview is None:
                return None
            server = state.servers.get(state.preview)
            if server is None or not _alive(server.pid):
                failure = self._server_ended(rollout, state.preview, server)
                return PreviewObservation(None, False, failure=f"the preview {failure}")
            if not self._bound(rollout, state.preview, server):
                return PreviewObservation(None, False)  # still starting
            ready = get_json(f"{server.address}/readyz") is not None
            return PreviewObservation(served_version(server.address), ready)

    def active_version(self, rollout: str) -> str | None:
        with self._state(rollout) as state:
            return served_version(state.proxy.address) if state.proxy else None

    def promote(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        with self._state(rollout) as state:
            state.model = model
            proxy = self._ensure_proxy(rollout, state)
            server = self._ensure_server(rollout, state, model, version)
            self._wait_ready(rollout, version, server)
            self._switch(rollout, proxy, server, version)
            if state.active != version:
                state.previous, state.active = state.active, version
            if state.preview == version:
                state.preview = None
            keep = {state.active, state.previous, state.preview}
            for old in [v for v in state.servers if v not in keep]:
                _stop(state.servers.pop(old))

    def abort(self, rollout: str) -> None:
        with self._state(rollout) as state:
            self._retire_preview(state)

    def serving_image(self, rollout: str) -> str | None:
        return None  # no images on one machine

    # beyond the port: what the CLI shows and how a user stops it all

    def describe(self, rollout: str) -> RolloutState:
        with self._state(rollout) as state:
            return state

    def rollouts(self) -> list[str]:
        root = self.workdir / "rollouts"
        return sorted(p.parent.name for p in root.glob("*/state.json")) if root.is_dir() else []

    def down(self, rollout: str) -> None:
        with self._state(rollout) as state:
            for server in state.servers.values():
                _stop(server)
            if state.proxy is not None:
                _stop(state.proxy)
            state.servers, state.proxy = {}, None
            state.active = state.previous = state.preview = None

    def up(self, rollout: str, model: str, active: str, previous: str | None) -> Process:
        """Serve `active` at the active address again (the same port as before `down`), with
        `previous` hot beside it for a rollback; what is already running is left as it is."""
        with self._state(rollout) as state:
            state.model = model
            proxy = self._ensure_proxy(rollout, state)
            versions = [active] if previous in (None, active) else [active, str(previous)]
            servers = {version: self._ensure_server(rollout, state, model, version) for version in versions}
            for version, server in servers.items():
                self._wait_ready(rollout, version, server)
            self._switch(rollout, proxy, servers[active], active)
            state.active, state.previous = active, previous if previous != active else None
            return proxy

    # internals

    @contextlib.contextmanager
    def _state(self, rollout: str) -> Iterator[RolloutState]:
        directory = self.directory(rollout)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = directory / "state.json"
            state = RolloutState.from_json(json.loads(path.read_text())) if path.exists() else RolloutState()
            try:
                yield state
            finally:  # a process started before a failure must stay known, or it could never be stopped
                replace_file(path, json.dumps(asdict(state), indent=2))

    def _spawn(self, command: list[str], log: Path, component: str | None = None) -> int:
        """`component`: who the process is (its own Vault identity); None for the proxy, which has none."""
        env = child_env(component, {TRACKING_ENV: self.tracking_uri})
        with log.open("a") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return process.pid

    def _ensure_proxy(self, rollout: str, state: RolloutState) -> Process:
        if state.proxy is not None and _alive(state.proxy.pid):
            return state.proxy
        port_file, log = self.directory(rollout) / "proxy.port", self.directory(rollout) / "proxy.log"
        port_file.unlink(missing_ok=True)
        target = self.directory(rollout) / "active-target"
        # the active address never moves once chosen; the first time, the OS picks it
        command = [
            sys.executable, "-m", "promoter.local.proxy", str(state.address_port), str(target), str(port_file)
        ]  # fmt: skip
        proxy = state.proxy = Process(self._spawn(command, log), state.address_port)
        if not _until(lambda: _read_port(port_file) or not _alive(proxy.pid), PROXY_START_SECONDS):
            raise RolloutError(f"{rollout}: the active proxy did not start in {PROXY_START_SECONDS:.0f}s")
        if not _alive(proxy.pid):
            raise RolloutError(f"{rollout}: the active proxy {_how_it_ended(proxy.pid)}{_tail(log)}")
        proxy.port = state.address_port = _read_port(port_file)
        return proxy

    def _ensure_server(self, rollout: str, state: RolloutState, model: str, version: str) -> Process:
        existing = state.servers.get(version)
        if existing is not None and _alive(existing.pid):
            return existing
        port_file = self._port_file(rollout, version)
        port_file.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "promoter", "serve",
            "--model-uri", f"models:/{model}/{version}",
            "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
            "--workdir", str(self.workdir),
            *self.serve_args,
        ]  # fmt: skip
        state.servers[version] = Process(self._spawn(command, self._log(rollout, version), SERVER), 0)
        return state.servers[version]

    def _bound(self, rollout: str, version: str, server: Process) -> bool:
        """Whether the server has bound its port; learns the port the first time."""
        server.port = server.port or _read_port(self._port_file(rollout, version))
        return server.port != 0

    def _server_ended(self, rollout: str, version: str, server: Process | None) -> str:
        """Why a server is gone, in words a person can act on: how it ended and its last lines."""
        ended = _how_it_ended(server.pid) if server is not None else "is not running"
        return f"server for version {version} {ended}{_tail(self._log(rollout, version))}"

    def _switch(self, rollout: str, proxy: Process, server: Process, version: str) -> None:
        replace_file(self.directory(rollout) / "active-target", f"127.0.0.1:{server.port}")
        if not _until(lambda: served_version(proxy.address) == version, 15.0):
            raise RolloutError(f"{rollout}: the active address does not answer with version {version}")

    def _wait_ready(self, rollout: str, version: str, server: Process) -> None:
        def ready() -> bool:
            if not _alive(server.pid):
                raise RolloutError(f"the {self._server_ended(rollout, version, server)}")
            if not self._bound(rollout, version, server):
                return False
            return get_json(f"{server.address}/readyz") is not None

        if not _until(ready, SERVER_START_SECONDS):
            raise RolloutError(
                f"the server for version {version} was not ready in {SERVER_START_SECONDS:.0f}s"
            )

    def _log(self, rollout: str, version: str) -> Path:
        return self.directory(rollout) / f"server-v{version}.log"

    def _port_file(self, rollout: str, version: str) -> Path:
        return self.directory(rollout) / f"server-v{version}.port"

    def _retire_preview(self, state: RolloutState) -> None:
        preview, state.preview = state.preview, None
        if preview is not None and preview not in (state.active, state.previous) and preview in state.servers:
            _stop(state.servers.pop(preview))


def _until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return f"; no log at {log}"
    if not lines:
        return f"; its log {log} is empty"
    return "; log " + str(log) + ":\n" + "\n".join(f"  | {line}" for line in lines)
