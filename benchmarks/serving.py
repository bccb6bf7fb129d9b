"""Serving throughput: promoter's server against `mlflow models serve`, the HTTP ceiling and the
model ceiling, side by side in one run, on the same machine and with the same number of workers.

    apt-get install wrk          # the load generator: its own process, closed loop
    .venv/bin/python benchmarks/serving.py [--duration 5] [--concurrency 1 8 32 64] [--workers 1]

Contenders: (1) `promoter serve`; (2) `mlflow models serve --env-manager local` on the same model;
(3) a do-nothing FastAPI/uvicorn endpoint that reads the same body and returns a constant (the HTTP
ceiling of the stack); (4) the model alone: batched forward passes in process, same thread count.
For reference, also (5) a do-nothing endpoint in bare ASGI on uvicorn: the floor under FastAPI,
which promoter's inference routes use (serving/inference_routes.py).
Shapes: single-input requests (HTTP-bound) and 64-input requests (model-bound).
The last three lines are the ratios the project tracks (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
        f"mlflow.register_model('runs:/{run_id}/model', 'digits')"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return tracking


def load(url: str, body: bytes, concurrency: int, duration: float, workdir: Path) -> dict[str, float]:
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
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    stats: dict[str, float] = json.loads(completed.stderr.strip().splitlines()[-1])
    return stats


def measure(
    name: str,
    command: list[str],
    ready: str,
    url: str,
    bodies: dict[int, bytes],
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
) -> list[Result]:
    log = (workdir / f"{name.split()[0]}.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        wait_until(ready)
        for shape, body in bodies.items():
            load(url, body, 4, 1.0, workdir)  # warm-up
            for concurrency in args.concurrency:
                stats = load(url, body, concurrency, args.duration, workdir)
                results.append(
                    Result(
                        name,
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
                    f"  {name:<16} {shape:>3} inputs  c={concurrency:<3} {results[-1].rps:>9,.0f} rps",
                    flush=True,
                )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    return results


def model_ceiling(tracking: str, batch: int, seconds: float, threads: int) -> float:
    import mlflow

    from promoter.pipelines.packaging import load_bundle

    mlflow.set_tracking_uri(tracking)
    if threads > 0:
        torch.set_num_threads(threads)
    bundle = load_bundle("models:/digits/1")
    bundle.optimize_for_inference()  # as the server runs it
    inputs = np.random.default_rng(0).uniform(0, 16, size=(batch, 1, 8, 8)).astype(np.float32)
    for _ in range(20):
        bundle.forward(inputs)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bundle.forward(inputs)
        done += batch
    return done / (time.perf_counter() - started)


def best(results: list[Result], server: str, shape: int) -> Result | None:
    measured = [r for r in results if r.server == server and r.shape == shape]
    return max(measured, key=lambda r: r.rps) if measured else None


def rps(result: Result | None) -> float | None:
    return result.rps if result else None


def ratio(name: str, ours: float | None, theirs: float | None) -> None:
    print(f"{name}={ours / theirs:.2f}" if ours and theirs else f"{name}=n/a (contender not measured)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of promoter serve and of the in-process ceiling (promoter's default: 1)",
    )
    parser.add_argument(
        "--serve-args", default="", help="extra flags for promoter serve, e.g. '--max-wait-ms 1'"
    )
    parser.add_argument("--only", nargs="+", default=None, help="contenders to run (default: all)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="promoter-bench-"))
    print(f"training and registering the digits model in {workdir} ...", flush=True)
    tracking = prepare_model(workdir)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # mlflow runs `uvicorn` by name
    rows = np.random.default_rng(0).uniform(0, 16, size=(64, 1, 8, 8)).round(1).tolist()
    bodies = {1: json.dumps({"inputs": rows[:1]}).encode(), 64: json.dumps({"inputs": rows}).encode()}
    (workdir / "do_nothing.py").write_text(DO_NOTHING_APP)

    contenders = []
    port = free_port()
    contenders.append(
        (
            "promoter serve",
            [
                str(BIN / "promoter"),
                "serve",
                "--model-uri",
                "models:/digits/1",
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
            f"http://127.0.0.1:{port}/predict",
        )
    )
    port = free_port()
    contenders.append(
        (
            "mlflow serve",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                "models:/digits/1",
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
            f"http://127.0.0.1:{port}/invocations",
        )
    )
    for name, app, ready_path in (("do-nothing", "app", "/docs"), ("bare ASGI", "bare", "/")):
        port = free_port()
        uvicorn = [str(BIN / "uvicorn"), f"do_nothing:{app}", "--app-dir", str(workdir), "--port", str(port)]
        contenders.append(
            (
                name,
                [*uvicorn, "--workers", str(args.workers), "--no-access-log", "--log-level", "warning"],
                f"http://127.0.0.1:{port}{ready_path}",
                f"http://127.0.0.1:{port}/invocations",
            )
        )

    results: list[Result] = []
    for name, command, ready, url in contenders:
        if args.only and name not in args.only:
            continue
        print(f"measuring {name} ...", flush=True)
        results += measure(name, command, ready, url, bodies, args, env, workdir)
    ceiling = model_ceiling(tracking, 64, args.duration, args.torch_threads)

    print(
        f"\nmachine: {os.cpu_count()} cores, torch {torch.__version__}, {args.torch_threads} thread(s) for "
        f"promoter and the in-process model, {args.workers} worker(s), {args.duration:.0f} s per point"
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

    # ours may count only where its latency is comparable: p95 within 1.25x of mlflow's at that concurrency
    comparable = [
        r
        for r in results
        if r.server == "promoter serve"
        and r.shape == 1
        and any(
            m.server == "mlflow serve"
            and m.shape == 1
            and m.concurrency == r.concurrency
            and r.p95 <= 1.25 * m.p95
            for m in results
        )
    ]
    ours_comparable = (
        max(comparable, key=lambda r: r.rps) if comparable else best(results, "promoter serve", 1)
    )
    ours, mlflow_best, fastapi, bare = (
        best(results, name, 1) for name in ("promoter serve", "mlflow serve", "do-nothing", "bare ASGI")
    )
    ours_64 = best(results, "promoter serve", 64)
    ratio("fraction_of_bare_asgi", rps(ours), rps(bare))  # for reference, not tracked
    ratio("throughput_ratio_vs_mlflow", rps(ours_comparable), rps(mlflow_best))
    ratio("fraction_of_http_ceiling", rps(ours), rps(fastapi))
    ratio("fraction_of_model_ceiling", ours_64.predictions_per_second if ours_64 else None, ceiling)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
