"""Serving throughput: promoter's server against `mlflow models serve`, MLServer, KServe, the HTTP
ceiling and the model ceiling, side by side in one run, on the same machine and with one worker each.

    apt-get install wrk          # the load generator: its own process, closed loop
    .venv/bin/python benchmarks/serving.py [--duration 5] [--concurrency 1 8 32 64] [--workers 1]
    .venv/bin/python benchmarks/serving.py --peers    # promoter V2, MLServer and KServe only

Contenders: (1) `promoter serve`, on `/predict` and on the V2 infer route; (2) `mlflow models serve
--env-manager local` on the same model; (3) MLServer and (4) KServe's ModelServer, each serving the
very graphs promoter's server compiled (`ModelBundle.save_compiled`, loaded by benchmarks/peers/)
on the same V2 request, each from its own environment, built once per version under
~/.cache/promoter/bench-envs with the project's uv and torch; (5) a do-nothing FastAPI/uvicorn
endpoint that reads the same body and returns a constant (the HTTP ceiling of the stack); (6) the
model alone: batched forward passes in process, same thread count. For reference, also (7) a
do-nothing endpoint in bare ASGI on uvicorn: the floor under FastAPI, which promoter's inference
routes use (serving/inference_routes.py), and in process, MLflow's pyfunc `predict` against the
server's `forward` on the same inputs.
Shapes: single-input requests (HTTP-bound) and 64-input requests (model-bound).
The last lines are the ratios the project tracks (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import torch
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from peers.compiled_graphs import CompiledGraphs  # the peers' own loader (benchmarks/ is sys.path[0])

if TYPE_CHECKING:
    from promoter.pipelines.packaging import ModelBundle

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"

CACHE = Path.home() / ".cache" / "promoter"
UV = CACHE / "uv-0.13.9" / "bin" / "uv"  # the project's uv (Makefile), with its wheel cache: torch is there
# Each peer in its own environment: MLServer 1.7 and KServe 0.21 pin conflicting FastAPI and protobuf
# versions, and neither belongs in the project's dependencies. Beside each peer, what it needs to run
# at its best here (a bare name: at the version the project's environment has, already in uv's cache):
# - httptools, uvicorn's fast HTTP parser, which promoter (uvicorn[standard]) and KServe have and
#   MLServer's requirements leave out: uvicorn would fall back to pure-Python h11;
# - uvloop below 0.22, whose get_event_loop() no longer makes a loop: MLServer 1.7.1's inference
#   workers (parallel_workers >= 1) die on start with it (SeldonIO/MLServer#2286).
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mlserver": ("1.7.1", ("httptools", "uvloop==0.21.0")),
    "kserve": ("0.21.0", ()),
}
MODEL = "digits"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
for name, value in string.gmatch(os.getenv("EXTRA_HEADERS") or "", "([^:\\n]+): ([^\\n]*)") do
  wrk.headers[name] = value
end
wrk.body = io.open(os.getenv("BODY_FILE")):read("*a")
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local ms = function(p) return latency:percentile(p) / 1e3 end
  io.stderr:write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "p50": %f, "p95": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6, errors, ms(50), ms(95), ms(99)))
end
"""
DO_NOTHING_APP = """
from fastapi import FastAPI, Request, Response
app = FastAPI()
@app.post("/invocations")
async def invocations(request: Request) -> Response:
    await request.body()
    return Response(b'{"predictions": [0]}', media_type="application/json")

async def bare(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"20")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"predictions": [0]}'})
"""


@dataclass(frozen=True)
class Result:
    server: str
    shape: int
    concurrency: int
    rps: float
    p50: float
    p95: float
    p99: float
    errors: int

    @property
    def predictions_per_second(self) -> float:
        return self.rps * self.shape


@dataclass(frozen=True)
class Route:
    """One measured endpoint of a contender: its name in the results, URL and body per shape."""

    name: str
    url: str
    bodies: dict[int, bytes]
    # checks one answer before the load (a V2 server must answer the compiled graphs' probabilities)
    check: Callable[[httpx.Response, int], None] | None = None
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # per shape, beside Content-Type


@dataclass(frozen=True)
class Contender:
    command: list[str]
    ready: str
    routes: list[Route]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def prepare_model(workdir: Path) -> str:
    """Train the example digits model and register it; returns the tracking URI."""
    tracking = f"sqlite:///{workdir / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    run_id = subprocess.run(
        [
            str(BIN / "promoter"),
            "train",
            str(REPO / "examples/digits/promotion.yaml"),
            "--workdir",
            str(workdir),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    code = (
        f"import mlflow; mlflow.set_tracking_uri({tracking!r}); "
        f"mlflow.register_model('runs:/{run_id}/model', {MODEL!r})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return tracking


def torch_pins() -> list[str]:
    """torch and everything it pulls in, at the versions installed here (`name==version`).

    As constraints of a peer's environment they make uv pick exactly the wheels the project's
    environment was built from, all in uv's cache: none of torch's wheels and CUDA libraries
    (gigabytes) is downloaded again."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [("torch", frozenset())]
    here = {key: str(value) for key, value in default_environment().items()}
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        dist = distribution(name)
        pins[canonicalize_name(name)] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or any(
                requirement.marker.evaluate({**here, "extra": extra}) for extra in extras or {""}
            ):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return sorted(f"{name}=={version}" for name, version in pins.items())


def peer_python(peer: str) -> Path:
    """The interpreter of the peer's own environment, built on first use and cached by version.

    Built with the project's uv and its cache; torch's closure is pinned to this environment's
    versions, so a cold machine downloads only the peer's own packages (benchmarks/README.md)."""
    version, extras = PEERS[peer]
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    root = CACHE / "bench-envs" / f"{peer}-{version}-py{python_version}"
    pins = torch_pins()
    requirements = [
        f"{peer}=={version}",
        next(pin for pin in pins if pin.startswith("torch==")),
        *(extra if "=" in extra else f"{extra}=={distribution(extra).version}" for extra in extras),
    ]
    marker = root / ".promoter-bench-env"
    wanted = "\n".join([*requirements, *pins]) + "\n"  # a new torch or peer version rebuilds it
    if marker.exists() and marker.read_text() == wanted:
        return root / "bin" / "python"
    if not UV.exists():
        sys.exit(f"{UV} is missing: `make install` installs the project's uv")
    print(f"building {root} (once per version) ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "UV_CACHE_DIR": str(CACHE / "uv")}
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([str(UV), "venv", "--quiet", "--python", base_python, str(root)], env=env, check=True)
    constraints = root / "torch-constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    install = ["pip", "install", "--python", str(root / "bin" / "python"), "--compile-bytecode"]
    subprocess.run([str(UV), *install, "--constraint", str(constraints), *requirements], env=env, check=True)
    marker.write_text(wanted)
    print(f"built {root.name} in {time.monotonic() - started:.0f} s", flush=True)
    return root / "bin" / "python"


def compile_graphs(bundle: ModelBundle, directory: Path) -> Path:
    """Save the server's compiled graphs for the peers, and check that what they load computes the
    same probabilities with the same operators as the server's own graphs."""
    bundle.save_compiled(directory)
    loaded = CompiledGraphs(directory)

    def operators(graph: Any) -> list[str]:  # serialisation turns constant int lists into ListConstructs
        skip = ("prim::Constant", "prim::ListConstruct")
        return [node.kind() for node in graph.graph.nodes() if node.kind() not in skip]

    for ours, theirs in ((bundle._single, loaded.single), (bundle._batched, loaded.batched)):
        if operators(ours) != operators(theirs):
            raise RuntimeError(f"the peers' graph differs from the server's: {operators(theirs)}")
    for n in (1, 64):
        inputs = np.random.default_rng(n).uniform(0, 16, size=(n, 1, 8, 8)).astype(np.float32)
        if not np.allclose(loaded.probabilities(inputs), bundle.forward(inputs), atol=1e-6):
            raise RuntimeError(f"the peers' graphs answer differently from the server's on {n} inputs")
    return directory


def load(
    url: str,
    body: bytes,
    concurrency: int,
    duration: float,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    threads = max(1, min(2, concurrency))
    completed = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{round(duration)}s",
            "-s",
            str(script),
            url,
        ],
        env={
            **os.environ,
            "BODY_FILE": str(body_file),
            "EXTRA_HEADERS": "\n".join(f"{name}: {value}" for name, value in (headers or {}).items()),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    stats: dict[str, float] = json.loads(completed.stderr.strip().splitlines()[-1])
    return stats


def measure(
    name: str,
    contender: Contender,
    routes: list[Route],
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
) -> list[Result]:
    log_path = workdir / f"{name.split()[0]}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            contender.command,
            env={**env, **contender.env},
            cwd=contender.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        results = []
        try:
            wait_until(contender.ready, process)
            for route in routes:
                for shape, body in route.bodies.items():
                    extra = route.headers.get(shape, {})
                    if route.check:
                        headers = {"Content-Type": "application/json", **extra}  # as wrk sends it
                        route.check(httpx.post(route.url, content=body, headers=headers, timeout=30), shape)
                    load(route.url, body, 4, 1.0, workdir, extra)  # warm-up
                    for concurrency in args.concurrency:
                        stats = load(route.url, body, concurrency, args.duration, workdir, extra)
                        results.append(
                            Result(
                                route.name,
                                shape,
                                concurrency,
                                stats["requests"] / stats["seconds"],
                                stats["p50"],
                                stats["p95"],
                                stats["p99"],
                                int(stats["errors"]),
                            )
                        )
                        print(
                            f"  {route.name:<16} {shape:>3} inputs  c={concurrency:<3} "
                            f"{results[-1].rps:>9,.0f} rps  p95 {results[-1].p95:>7.2f} ms",
                            flush=True,
                        )
        except Exception as exc:
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"{name}: {exc}\n--- last lines of {log_path}:\n{tail}") from exc
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results


def v2_body(rows: list[Any]) -> bytes:
    """The V2 (Open Inference Protocol) request every V2 contender gets: JSON, data flattened."""
    data = np.asarray(rows, dtype=np.float32).ravel().round(1).tolist()
    tensor = {"name": "input", "shape": [len(rows), 1, 8, 8], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "probabilities"}]}).encode()


def v2_binary_request(rows: list[Any]) -> tuple[bytes, dict[str, str]]:
    """The same request in Triton's binary tensor data extension, as tritonclient sends it by default:
    the tensor as raw little-endian FP32 after the JSON header, the probabilities asked back in binary."""
    raw = np.asarray(rows, dtype="<f4").round(1).tobytes()
    tensor = {
        "name": "input",
        "shape": [len(rows), 1, 8, 8],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def v2_binary_checker(
    expected: dict[int, npt.NDArray[np.float32]],
) -> Callable[[httpx.Response, int], None]:
    def check(response: httpx.Response, shape: int) -> None:
        response.raise_for_status()
        length = int(response.headers["Inference-Header-Content-Length"])
        got = np.frombuffer(response.content[length:], dtype="<f4").reshape(shape, -1)
        if not np.allclose(got, expected[shape], atol=1e-5):
            raise RuntimeError(
                f"wrong binary probabilities for {shape} inputs: {got[0]} != {expected[shape][0]}"
            )

    return check


def v2_checker(expected: dict[int, npt.NDArray[np.float32]]) -> Callable[[httpx.Response, int], None]:
    def check(response: httpx.Response, shape: int) -> None:
        response.raise_for_status()
        outputs = {output["name"]: output for output in response.json()["outputs"]}
        got = np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(shape, -1)
        if not np.allclose(got, expected[shape], atol=1e-5):
            raise RuntimeError(f"wrong probabilities for {shape} inputs: {got[0]} != {expected[shape][0]}")

    return check


def mlserver_contender(
    python: Path, graphs: Path, args: argparse.Namespace, workdir: Path, route: Callable[[str], Route]
) -> Contender:
    """MLServer 1.7 with the custom runtime of benchmarks/peers/mlserver_digits.py, configured as its
    documentation says: settings.json for the server, model-settings.json beside the model."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    repository = workdir / "mlserver"
    (repository / MODEL).mkdir(parents=True, exist_ok=True)
    server_settings = {
        "debug": False,  # MLServer's switch for uvicorn's access log, among others
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": args.mlserver_parallel_workers,
    }
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_digits.DigitsRuntime",
        "max_batch_size": args.mlserver_max_batch_size,  # adaptive batching: requests per batch
        "max_batch_time": args.mlserver_max_batch_ms / 1000,  # seconds to wait for a fuller batch
        "parameters": {"uri": str(graphs), "version": "1"},
    }
    (repository / "settings.json").write_text(json.dumps(server_settings, indent=2))
    (repository / MODEL / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return Contender(
        [str(python.parent / "mlserver"), "start", str(repository)],
        f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready",
        [route(f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer")],
        env={
            "PYTHONPATH": str(PEERS_DIR),
            "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        cwd=repository,  # MLServer keeps its metrics' files under the working directory
    )


def kserve_contender(python: Path, graphs: Path, route: Callable[[str], Route]) -> Contender:
    http, grpc = free_port(), free_port()
    return Contender(
        [
            str(python),
            str(PEERS_DIR / "kserve_digits.py"),
            "--model_name",
            MODEL,
            "--model_dir",
            str(graphs),
            "--http_port",
            str(http),
            "--grpc_port",
            str(grpc),
            "--enable_grpc",
            "false",
            "--workers",
            "1",
            "--enable_latency_logging",
            "false",
        ],
        f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready",
        [route(f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer")],
        env={"PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


def model_ceiling(bundle: ModelBundle, batch: int, seconds: float) -> float:
    inputs = np.random.default_rng(0).uniform(0, 16, size=(batch, 1, 8, 8)).astype(np.float32)
    for _ in range(20):
        bundle.forward(inputs)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bundle.forward(inputs)
        done += batch
    return done / (time.perf_counter() - started)


def pyfunc_against_forward(bundle: ModelBundle, n: int, calls: int) -> tuple[float, float]:
    """Median seconds of one MLflow pyfunc `predict` and one server `forward`, on the same inputs.

    The calls alternate, so that the machine's drift falls on both alike."""
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    inputs = np.random.default_rng(n).uniform(0, 16, size=(n, 1, 8, 8)).astype(np.float32)
    timings: tuple[list[float], list[float]] = ([], [])
    for call in range(calls + 50):  # the first 50 of each warm up
        for predict, spent in ((pyfunc.predict, timings[0]), (bundle.forward, timings[1])):
            started = time.perf_counter()
            predict(inputs)
            if call >= 50:
                spent.append(time.perf_counter() - started)
    return statistics.median(timings[0]), statistics.median(timings[1])


def best(results: list[Result], server: str, shape: int) -> Result | None:
    measured = [r for r in results if r.server == server and r.shape == shape]
    return max(measured, key=lambda r: r.rps) if measured else None


def best_comparable(results: list[Result], ours: str, theirs: str) -> Result | None:
    """Ours at its best single-input RPS where its latency is comparable: p95 within 1.25x of theirs at
    that concurrency (ours at its best when no concurrency qualifies, as the first comparisons did)."""
    comparable = [
        r
        for r in results
        if r.server == ours
        and r.shape == 1
        and any(
            m.server == theirs and m.shape == 1 and m.concurrency == r.concurrency and r.p95 <= 1.25 * m.p95
            for m in results
        )
    ]
    return max(comparable, key=lambda r: r.rps) if comparable else best(results, ours, 1)


def rps(result: Result | None) -> float | None:
    return result.rps if result else None


def predictions(result: Result | None) -> float | None:
    return result.predictions_per_second if result else None


def ratio(name: str, ours: float | None, theirs: float | None) -> None:
    print(f"{name}={ours / theirs:.2f}" if ours and theirs else f"{name}=n/a (contender not measured)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--workers", type=int, default=1, help="workers of promoter, mlflow and do-nothing")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of promoter serve and of the in-process ceiling (promoter's default: 1)",
    )
    parser.add_argument(
        "--serve-args", default="", help="extra flags for promoter serve, e.g. '--max-wait-ms 1'"
    )
    names = [
        "promoter serve",
        "promoter V2",
        "promoter binary",
        "mlflow serve",
        "mlserver",
        "kserve",
        "do-nothing",
        "bare ASGI",
    ]
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help=f"contenders to run, of: {names}"
    )
    parser.add_argument("--peers", action="store_true", help="only promoter V2, mlserver and kserve")
    parser.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        default=0,
        help="MLServer's parallel_workers: 0 runs inference in the server's process (measured faster "
        "here than 1, its default, which hands each batch to one worker process)",
    )
    parser.add_argument("--mlserver-max-batch-size", type=int, default=64)
    parser.add_argument("--mlserver-max-batch-ms", type=float, default=1.0)
    args = parser.parse_args()
    only: list[str] | None = ["promoter V2", "mlserver", "kserve"] if args.peers else args.only
    if only and (unknown := set(only) - set(names)):
        parser.error(f"unknown contenders {sorted(unknown)}; choose among {names}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    wanted = set(only or names)
    # the peers' environments first: building one takes a while, and nothing else waits on it
    pythons = {peer: peer_python(peer) for peer in PEERS if peer in wanted}

    workdir = Path(tempfile.mkdtemp(prefix="promoter-bench-"))
    print(f"training and registering the digits model in {workdir} ...", flush=True)
    tracking = prepare_model(workdir)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # mlflow runs `uvicorn` by name
    import mlflow

    from promoter.pipelines.packaging import load_bundle

    mlflow.set_tracking_uri(tracking)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    bundle = load_bundle(f"models:/{MODEL}/1")
    if not bundle.compiled:  # load_bundle compiles it, as for the server
        sys.exit("the digits network did not compile: the server would run it eagerly")
    graphs = compile_graphs(bundle, workdir / "graphs")

    rows = np.random.default_rng(0).uniform(0, 16, size=(64, 1, 8, 8)).round(1).tolist()
    bodies = {1: json.dumps({"inputs": rows[:1]}).encode(), 64: json.dumps({"inputs": rows}).encode()}
    v2_bodies = {1: v2_body(rows[:1]), 64: v2_body(rows)}
    binary = {1: v2_binary_request(rows[:1]), 64: v2_binary_request(rows)}
    expected = {n: bundle.forward(np.asarray(rows[:n], dtype=np.float32)) for n in (1, 64)}

    def v2_route(name: str) -> Callable[[str], Route]:
        return lambda url: Route(name, url, v2_bodies, v2_checker(expected))

    (workdir / "do_nothing.py").write_text(DO_NOTHING_APP)

    contenders: list[Contender] = []
    port = free_port()
    contenders.append(
        Contender(
            [
                str(BIN / "promoter"),
                "serve",
                "--model-uri",
                f"models:/{MODEL}/1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--workdir",
                str(workdir),
                "--torch-threads",
                str(args.torch_threads),
                *args.serve_args.split(),
            ],
            f"http://127.0.0.1:{port}/readyz",
            [
                Route("promoter serve", f"http://127.0.0.1:{port}/predict", bodies),
                v2_route("promoter V2")(f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"),
                Route(
                    "promoter binary",
                    f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
                    {n: binary[n][0] for n in binary},
                    v2_binary_checker(expected),
                    {n: binary[n][1] for n in binary},
                ),
            ],
        )
    )
    port = free_port()
    contenders.append(
        Contender(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}/1",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(args.workers),
            ],
            f"http://127.0.0.1:{port}/ping",
            [Route("mlflow serve", f"http://127.0.0.1:{port}/invocations", bodies)],
        )
    )
    if "mlserver" in pythons:
        contenders.append(
            mlserver_contender(pythons["mlserver"], graphs, args, workdir, v2_route("mlserver"))
        )
    if "kserve" in pythons:
        contenders.append(kserve_contender(pythons["kserve"], graphs, v2_route("kserve")))
    for name, app, ready_path in (("do-nothing", "app", "/docs"), ("bare ASGI", "bare", "/")):
        port = free_port()
        uvicorn = [str(BIN / "uvicorn"), f"do_nothing:{app}", "--app-dir", str(workdir), "--port", str(port)]
        contenders.append(
            Contender(
                [*uvicorn, "--workers", str(args.workers), "--no-access-log", "--log-level", "warning"],
                f"http://127.0.0.1:{port}{ready_path}",
                [Route(name, f"http://127.0.0.1:{port}/invocations", bodies)],
            )
        )

    results: list[Result] = []
    for contender in contenders:
        routes = [route for route in contender.routes if route.name in wanted]
        if routes:
            name = contender.routes[0].name
            print(f"measuring {', '.join(route.name for route in routes)} ...", flush=True)
            results += measure(name, contender, routes, args, env, workdir)
    ceiling = model_ceiling(bundle, 64, args.duration)
    pyfunc = {n: pyfunc_against_forward(bundle, n, calls) for n, calls in ((1, 1000), (64, 300))}

    print(
        f"\nmachine: {os.cpu_count()} cores, torch {torch.__version__}, {args.torch_threads} thread(s) for "
        f"promoter, the peers' graphs and the in-process model, {args.workers} worker(s), "
        f"{args.duration:.0f} s per point; mlserver: parallel_workers={args.mlserver_parallel_workers}, "
        f"max_batch_size={args.mlserver_max_batch_size}, max_batch_time={args.mlserver_max_batch_ms:g} ms"
    )
    print(
        f"{'server':<16} {'inputs':>6} {'conc':>5} {'RPS':>9} {'pred/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6}"
    )
    for r in results:
        print(
            f"{r.server:<16} {r.shape:>6} {r.concurrency:>5} {r.rps:>9,.0f} "
            f"{r.predictions_per_second:>10,.0f} {r.p50:>8.2f} {r.p95:>8.2f} {r.p99:>8.2f} {r.errors:>6}"
        )
    print(f"{'model in-process':<16} {64:>6} {'-':>5} {'-':>9} {ceiling:>10,.0f}")
    for n, (pyfunc_s, forward_s) in pyfunc.items():
        print(
            f"in process, {n:>2} input(s): MLflow pyfunc predict {pyfunc_s * 1e6:>8,.0f} us, "
            f"server forward {forward_s * 1e6:>6,.0f} us (medians)"
        )

    ours, mlflow_best, fastapi, bare = (
        best(results, name, 1) for name in ("promoter serve", "mlflow serve", "do-nothing", "bare ASGI")
    )
    ours_64 = best(results, "promoter serve", 64)
    ratio("fraction_of_bare_asgi", rps(ours), rps(bare))  # for reference, not tracked
    ratio(
        "throughput_ratio_vs_mlflow",
        rps(best_comparable(results, "promoter serve", "mlflow serve")),
        rps(mlflow_best),
    )
    ratio("fraction_of_http_ceiling", rps(ours), rps(fastapi))
    ratio("fraction_of_model_ceiling", predictions(ours_64), ceiling)
    for peer in PEERS:
        ratio(
            f"throughput_ratio_vs_{peer}",
            rps(best_comparable(results, "promoter V2", peer)),
            rps(best(results, peer, 1)),
        )
    for peer in PEERS:
        ratio(
            f"predictions_ratio_vs_{peer}",
            predictions(best(results, "promoter V2", 64)),
            predictions(best(results, peer, 64)),
        )
    for n, (pyfunc_s, forward_s) in pyfunc.items():
        print(f"pyfunc_vs_forward_{n}={pyfunc_s / forward_s:.2f}")
    # not a target: what the binary tensor data extension buys over the same request in JSON
    ratio(
        "binary_vs_json_64",
        predictions(best(results, "promoter binary", 64)),
        predictions(best(results, "promoter V2", 64)),
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
