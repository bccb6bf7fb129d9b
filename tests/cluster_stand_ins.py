"""Stand-ins for the parts of a cluster that cannot run here, each doing exactly what it replaces.

The test bed runs a real API server, controller-manager, scheduler and Argo Rollouts controller, but
kwok's pods run no containers and no Argo Workflows controller runs (its module is not on the Go
proxy here). So, in these tests:
- `ArgoController` plays Argo's workflow controller: it runs the Workflow's steps for real (Hera's
  runner, real torch, the shared MLflow store) and writes the phase and output parameters into the
  Workflow's `.status` as Argo would.
- `ServiceAnswers` plays the inference pods behind a Service: `/metadata` answers with the model
  version of the Ready pods the Service's selector (set by the Rollouts controller) picks.
- `LoadTestKubelet` plays the kubelet for load-test Job pods: it runs the Job's container command
  for real (Locust against a real `promoter serve` of the version the preview Service selects) and
  writes the exit code and termination message into the pod's status; or it "crashes" the pod.
- `PodLogins` plays the kubelet's part for each of those processes' identity: the process gets the
  environment its container spec says (the VAULT_* variables the operator or the Rollout wrote), and
  its projected service-account token is one the real API server minted (TokenRequest) for the pod's
  service account and the volume's audience, written to a file. A pod spec with the wrong account,
  role or audience therefore fails its Vault login here as it would in a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from promoter.operator.argo_rollouts import MODEL_URI_ENV
from promoter.pipelines.local_executor import WorkflowError, recorded_results, run_workflow
from promoter.pipelines.steps import WORKDIR_ENV

from .conftest import PROMOTER, Server
from .kube import mint

WORKFLOWS = ("argoproj.io", "v1alpha1")
CREDENTIAL_FILE = "VAULT_CREDENTIAL_FILE"


def clean_env() -> dict[str, str]:
    """This process's environment without any Vault or MLflow variable: a process started by a
    stand-in gets those from its pod spec only (the test process itself holds an admin login)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "MLFLOW_"))}


class PodLogins:
    """Projected service-account tokens for local processes, minted by the real API server."""

    def __init__(self, api: Any, namespace: str, directory: Path) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api)
        self.namespace, self.directory = namespace, directory
        directory.mkdir(parents=True, exist_ok=True)

    def token_file(self, service_account: str, audience: str | None) -> Path:
        """TokenRequest for `service_account` and `audience` (None: the API server's own), as the
        kubelet asks for a projected token."""
        token = mint(self.core, self.namespace, service_account, [audience] if audience else None, 3600)
        path = self.directory / f"{service_account}-{audience or 'api'}.jwt"
        path.write_text(token)
        return path

    def process_env(
        self, pod_spec: Mapping[str, Any], container: Mapping[str, Any], volumes: list[Any] | None = None
    ) -> dict[str, str]:
        """The container's environment (plain values: the operator writes no secret into a spec), with
        VAULT_CREDENTIAL_FILE at a real token of the pod's service account for the audience its
        projected volume asks for. `volumes`: where the spec keeps them elsewhere (a Workflow's spec)."""
        env = {item["name"]: str(item.get("value", "")) for item in container.get("env") or []}
        if CREDENTIAL_FILE in env:
            in_pod = PurePosixPath(env[CREDENTIAL_FILE])
            mount = next(
                m
                for m in container.get("volumeMounts") or []
                if in_pod.parent == PurePosixPath(m["mountPath"])
            )
            volume = next(v for v in volumes or pod_spec.get("volumes") or [] if v["name"] == mount["name"])
            token = next(
                source["serviceAccountToken"]
                for source in volume["projected"]["sources"]
                if source.get("serviceAccountToken", {}).get("path") == in_pod.name
            )
            account = pod_spec.get("serviceAccountName") or "default"
            env[CREDENTIAL_FILE] = str(self.token_file(account, token["audience"]))
        return env


class _Loop(threading.Thread):
    """Calls `step` every `interval` seconds until stopped; errors are kept for the test to raise."""

    def __init__(self, step: Callable[[], None], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.step, self.interval = step, interval
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.step()
            except Exception as exc:
                self.errors.append(exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]


class ArgoController(_Loop):
    def __init__(self, api: Any, namespace: str, workdir: Path, logins: PodLogins) -> None:
        from kubernetes import client

        super().__init__(self._step)
        self.objects: Any = client.CustomObjectsApi(api)
        self.namespace, self.workdir, self.logins = namespace, workdir, logins

    def _env(self, workflow: dict[str, Any]) -> dict[str, str]:
        """A step's environment: the template's own variables (tracking URI, Vault role and path, as
        the operator wrote them), its pod's token, and the workdir that stands in for the cluster's
        shared volume. Nothing of the test process's MLflow or Vault variables."""
        spec = workflow["spec"]
        script = next(t for t in spec["templates"] if "script" in t)["script"]
        pod = {**self.logins.process_env(spec, script, spec.get("volumes"))}
        return {**clean_env(), **pod, WORKDIR_ENV: str(self.workdir)}

    def _step(self) -> None:
        workflows = self.objects.list_namespaced_custom_object(*WORKFLOWS, self.namespace, "workflows")
        for workflow in workflows["items"]:
            if (workflow.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self._advance(workflow)

    def _advance(self, workflow: dict[str, Any]) -> None:
        """One step per call, so the operator sees Training and Evaluating as Argo would show them."""
        name = workflow["metadata"]["name"]
        directory = self.workdir / "argo" / name
        try:
            run_workflow(workflow, directory, env=self._env(workflow), max_new_tasks=1, inherit=False)
        except WorkflowError as exc:
            self._write(name, {"phase": "Failed", "message": str(exc)})
            return
        results = recorded_results(directory)
        nodes = {
            f"{name}-{task}": {
                "displayName": task,
                "type": "Pod",
                "phase": "Succeeded",
                "outputs": {"parameters": [{"name": k, "value": v} for k, v in result.outputs.items()]},
            }
            for task, result in results.items()
        }
        dag = next(t for t in workflow["spec"]["templates"] if "dag" in t)["dag"]["tasks"]
        finished = all(task["name"] in results for task in dag)
        self._write(name, {"phase": "Succeeded" if finished else "Running", "nodes": nodes})

    def _write(self, name: str, status: dict[str, Any]) -> None:
        # No status subresource on Workflows: Argo's controller patches the object itself.
        self.objects.patch_namespaced_custom_object(
            *WORKFLOWS, self.namespace, "workflows", name, {"status": status}
        )


def selected_pods(core: Any, namespace: str, service: str) -> dict[str, dict[str, Any]]:
    """The Ready pods behind a Service, by the model version each serves (pod objects as dicts)."""
    selector = core.read_namespaced_service(service, namespace).spec.selector or {}
    label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
    pods = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=label_selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if pod.status.phase == "Running" and ready and pod.metadata.deletion_timestamp is None:
            for env in pod.spec.containers[0].env or []:
                if env.name == MODEL_URI_ENV:
                    pods[env.value.rsplit("/", 1)[1]] = core.api_client.sanitize_for_serialization(pod)
    return pods


def _selected_versions(core: Any, namespace: str, service: str) -> set[str]:
    return set(selected_pods(core, namespace, service))


class ServiceAnswers:
    """GET /{namespace}/{service}/metadata, answered as the pods behind the Service would."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        core: Any = client.CoreV1Api(api)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                versions = _selected_versions(core, parts[0], parts[1]) if len(parts) == 3 else set()
                if len(versions) != 1:  # nothing ready behind it (or a mix: not one answer)
                    self.send_error(503)
                    return
                body = json.dumps({"name": "digits", "version": versions.pop()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url_template = f"http://127.0.0.1:{self.server.server_address[1]}/{{namespace}}/{{service}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class LoadTestKubelet(_Loop):
    """Ends each Running load-test pod: `crash` (exit 137, no message) or a real run of its command."""

    def __init__(self, api: Any, namespace: str, workdir: Path, logins: PodLogins) -> None:
        from kubernetes import client

        super().__init__(self._step)
        self.core: Any = client.CoreV1Api(api)
        self.namespace, self.workdir, self.logins = namespace, workdir, logins
        self.crash = False
        self.runs: list[str] = []
        # Entered with (server, namespace, service) while the preview's real server is up: a test can
        # watch it (e.g. have Prometheus scrape it) for the whole load test.
        self.serving: Callable[[Server, str, str], AbstractContextManager[object]] = lambda *_: (
            contextlib.nullcontext()
        )

    def _step(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="job-name").items
        for pod in pods:
            if pod.status.phase == "Running" and pod.metadata.name not in self.runs:
                self.runs.append(pod.metadata.name)
                self._end(pod)

    def _end(self, pod: Any) -> None:
        container = pod.spec.containers[0]
        if self.crash:
            code, message = 137, ""
        else:
            spec = self.core.api_client.sanitize_for_serialization(pod.spec)
            code, message = self._run(pod.metadata.name, spec)
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        if message:
            terminated["message"] = message
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def serve(self, pod: Mapping[str, Any], version: str) -> Server:
        """A real `promoter serve` of what an inference pod serves, as that pod's container would run:
        its environment (tracking URI, its Vault role and path) and its service account's token."""
        spec = pod["spec"]
        env = self.logins.process_env(spec, spec["containers"][0])
        return Server(self.workdir, "--model-uri", f"models:/digits/{version}", env=env)

    def _run(self, name: str, spec: dict[str, Any]) -> tuple[int, str]:
        """The Job's command, with the preview Service's address replaced by a real local server of
        the version that Service selects, and the termination-message path by a temporary file. The
        load test runs with its container's environment and token; its output goes to a log file."""
        container = spec["containers"][0]
        command = list(container["command"])
        host = command[command.index("--host") + 1]
        service, namespace = host.removeprefix("http://").split(".")[:2]
        pods = selected_pods(self.core, namespace, service)
        if len(pods) != 1:
            return 1, ""
        [(version, pod)] = pods.items()
        server = self.serve(pod, version)
        try:
            server.wait_ready()
            with self.serving(server, namespace, service), tempfile.TemporaryDirectory() as scratch:
                result = Path(scratch) / "result.json"
                arguments = list(command[1:])
                arguments[arguments.index("--host") + 1] = server.url
                arguments[arguments.index("--result-file") + 1] = str(result)
                completed = subprocess.run(
                    [str(PROMOTER), *arguments],
                    capture_output=True,
                    text=True,
                    env={**clean_env(), **self.logins.process_env(spec, container)},
                    timeout=300,
                    check=False,
                )
                (self.workdir / f"{name}.log").write_text(completed.stdout + completed.stderr)
                return completed.returncode, result.read_text() if result.exists() else ""
        finally:
            server.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 300, *loops: _Loop) -> Any:
    """Poll `check` until it returns something truthy; stand-ins' errors fail the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for loop in loops:
            loop.check()
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
