"""`manyminds serve` against the library called directly: requests per second and the latency it adds.

The upstream is a Scripted backend with a fixed 50 ms latency, so what is
measured is the server (HTTP, validation, admission, JSON) and not a model.
The server runs in its own process on 127.0.0.1; clients are asyncio tasks
sending requests one after another, at 1, 16 and 64 at once (aiohttp where
installed: httpx's client cost more CPU per request than the server). The direct
side runs the same strategy for the same questions through one Session at
the same concurrency. Added latency = mean request latency through the
server minus mean latency of the direct call. Goal: under 5 ms at 16 clients.

    .venv/bin/python benchmarks/serve.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import record

LATENCY = 0.05
MODEL = "self-consistency-4"
SHAPES = ((1, 40), (16, 20), (64, 8))  # (clients, requests per client)

SERVER = r'''
import sys, uvicorn
from manyminds.backends import Scripted
from manyminds.server import ServerConfig, create_app
backend = Scripted(lambda m, p, i: f"The answer is {12 if i % 3 else 13}.", latency=float(sys.argv[2]))
app = create_app(ServerConfig(backend=backend, max_concurrency=128, max_queue=128))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def question(client: int, k: int) -> str:
    return f"What is {client} + {k}?"


async def through_server(url: str, clients: int, per_client: int) -> list[float]:
    """Latency of each request through the server. The client is aiohttp where it is installed:
    httpx's pool spent about 8 ms of CPU per request at 64 clients, more than the server did."""
    latencies: list[float] = []
    try:
        import aiohttp
    except ImportError:
        aiohttp = None  # type: ignore[assignment]

    def body(c: int, k: int) -> dict:
        return {"model": MODEL, "messages": [{"role": "user", "content": question(c, k)}],
                "manyminds": {"format": "number"}}

    if aiohttp is not None:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(base_url=url + "/", connector=connector) as http:
            async def one_client(c: int) -> None:
                for k in range(per_client):
                    start = time.perf_counter()
                    async with http.post("chat/completions", json=body(c, k)) as response:
                        await response.read()
                        assert response.status == 200, await response.text()
                    latencies.append(time.perf_counter() - start)

            await asyncio.gather(*(one_client(c) for c in range(clients)))
        return latencies
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def one_client_httpx(c: int) -> None:
            for k in range(per_client):
                start = time.perf_counter()
                response = await http.post("/chat/completions", json=body(c, k))
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text

        await asyncio.gather(*(one_client_httpx(c) for c in range(clients)))
    return latencies


async def direct(clients: int, per_client: int) -> list[float]:
    from manyminds.backends import Scripted
    from manyminds.session import Session
    from manyminds.strategies import make
    from manyminds.types import AnswerFormat, Task

    backend = Scripted(lambda m, p, i: f"The answer is {12 if i % 3 else 13}.", latency=LATENCY)
    strategy = make("self-consistency", 4, prompt="raw")
    latencies: list[float] = []
    with Session(backend, concurrency=1) as session:
        async def one_client(c: int) -> None:
            for k in range(per_client):
                start = time.perf_counter()
                await session.asolve(strategy, Task(question=question(c, k), format=AnswerFormat.NUMBER))
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return latencies


def main() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(LATENCY)], env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        asyncio.run(through_server(url, 4, 3))  # warm: imports, compiled graphs
        asyncio.run(direct(4, 3))
        rows = []
        for clients, per_client in SHAPES:
            start = time.perf_counter()
            served = asyncio.run(through_server(url, clients, per_client))
            served_s = time.perf_counter() - start
            start = time.perf_counter()
            called = asyncio.run(direct(clients, per_client))
            direct_s = time.perf_counter() - start
            added = statistics.mean(served) - statistics.mean(called)
            row = {"clients": clients, "requests": clients * per_client,
                   "server_requests_per_s": round(len(served) / served_s, 1),
                   "direct_requests_per_s": round(len(called) / direct_s, 1),
                   "server_mean_ms": round(1000 * statistics.mean(served), 2),
                   "direct_mean_ms": round(1000 * statistics.mean(called), 2),
                   "server_p95_ms": round(1000 * sorted(served)[int(0.95 * len(served)) - 1], 2),
                   "added_ms": round(1000 * added, 2)}
            rows.append(row)
            print(row, flush=True)
    finally:
        server.terminate()
        server.wait(20)
    at16 = next(r for r in rows if r["clients"] == 16)
    print("written", record("serve", {"upstream_latency_s": LATENCY, "model": MODEL, "rows": rows,
                                      "goal": "under 5 ms added per request at 16 clients",
                                      "met": at16["added_ms"] < 5}))


if __name__ == "__main__":
    main()
