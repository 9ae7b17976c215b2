"""Helpers shared by the benchmark scripts: timing and recording results."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def record(name: str, data: dict) -> Path:
    """Write results/<name>.json with the machine and the time of the run."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def best_of(repeats: int, run) -> float:
    """The fastest of `repeats` timings of `run()` (seconds): the least disturbed one."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def paired(a: "Any", b: "Any", resamples: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over questions (two arrays of scores on the same questions) with a seeded
    percentile bootstrap 95% interval."""
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_UPSTREAM = r'''
import asyncio, json, sys, time, uuid
import uvicorn

capacity, slots = int(sys.argv[3]), None

async def app(scope, receive, send):
    global slots
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if capacity:
        slots = slots or asyncio.Semaphore(capacity)
        async with slots:
            await asyncio.sleep(float(sys.argv[2]))
    else:
        await asyncio.sleep(float(sys.argv[2]))
    request = json.loads(body or b"{}")
    n = int(request.get("n", 1))
    reply = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
             "model": request.get("model", "fake"),
             "choices": [{"index": k, "message": {"role": "assistant", "content": "The answer is 12."},
                          "finish_reason": "stop", "logprobs": None} for k in range(n)],
             "usage": {"prompt_tokens": 9, "completion_tokens": 5 * n, "total_tokens": 9 + 5 * n}}
    payload = json.dumps(reply).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''
"""A fake OpenAI-compatible server (run as a script: PORT LATENCY CAPACITY): every chat completion
answered after LATENCY seconds, at most CAPACITY at once (0: no limit), as a server's batch would."""


def start_fake_upstream(port: int, latency: float, capacity: int = 0) -> "subprocess.Popen[bytes]":
    """The fake OpenAI-compatible server in its own process on 127.0.0.1:`port`."""
    return subprocess.Popen([sys.executable, "-c", FAKE_UPSTREAM, str(port), str(latency), str(capacity)])
