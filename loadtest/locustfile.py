"""Locust user for a promoter inference server (run by `promoter.loadtest.runner`, never imported).

Each user asks the server for its signature once, then sends single-input predictions shaped by it,
with a short think time (about 10 requests/s per user), so `users` sets the offered load. A request
counts as failed unless it is a 200 carrying predictions: a server that answers fast with errors
must not look healthy.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from locust import FastHttpUser, between, task

BODIES = 32


def _nested(shape: list[int], rng: random.Random) -> Any:
    if not shape:
        return rng.random()
    return [_nested(shape[1:], rng) for _ in range(shape[0])]


class Predictor(FastHttpUser):
    wait_time = between(0.05, 0.15)

    def on_start(self) -> None:
        metadata = self.client.get("/metadata").json()
        shape = [int(d) for d in metadata["signature"]["inputs"][0]["shape"][1:]]
        assert math.prod(shape) > 0, f"unusable input shape {shape}"
        rng = random.Random(len(self.environment.runner.user_greenlets) if self.environment.runner else 0)
        self.bodies = [json.dumps({"inputs": [_nested(shape, rng)]}) for _ in range(BODIES)]

    @task
    def predict(self) -> None:
        body = random.choice(self.bodies)
        headers = {"content-type": "application/json"}
        with self.client.post("/predict", data=body, headers=headers, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif "predictions" not in (response.text or ""):
                response.failure("no predictions in the answer")
