"""`manyminds serve` against calling the upstream directly: latency it adds, throughput, and its CPU.

The upstream is a fake OpenAI-compatible server (its own process on 127.0.0.1) that answers every
chat completion after 50 ms. The same aiohttp clients send the same requests, one after another
each, at 1, 16 and 64 clients at once: directly to the upstream (`model` its own), and through
`manyminds serve` (its own process, backend `openai:fake@UPSTREAM`) as `self-consistency-1`, one
upstream call per request, so the difference is what the server costs. Reported per shape: p50
and p95 latency both ways and the p50 the server adds, requests per second both ways and their
ratio, and the server process's CPU time per request (from /proc). The load generator shares the
machine's cores with both servers, as a deployment's clients would not.

Goals (issue #23): added p50 <= 2 ms at 1 client, <= 5 ms at 16, <= 20 ms at 64; throughput at
64 clients >= 0.8x direct; server CPU <= 1 ms a request.

Also measured, for the choice of HTTP client (`backends/openai_compat.py`): the CPU one chat
completion costs the calling process with httpx and with aiohttp, 16 at a time against the same
upstream answering at once. And the floor this machine sets: the CPU of `asyncio.sleep(0.05)`, an
idle wait and a wake-up, which every request pays at least twice (for the client's request and for
the upstream's reply) and which is not the server's doing.

    .venv/bin/python benchmarks/serve.py [--model self-consistency-1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import free_port, record, start_fake_upstream

LATENCY = 0.05
SHAPES = ((1, 60), (16, 25), (64, 10))  # (clients, requests per client)

SERVER = r'''
import sys, uvicorn
from manyminds.server import ServerConfig, create_app
app = create_app(ServerConfig(backend=f"openai:model=fake,base_url=http://127.0.0.1:{sys.argv[2]}/v1,max_concurrency=128", max_concurrency=128,
                              max_queue=256))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''


def start(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OPENAI_API_KEY": "unused"}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env)


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": "x"}]},
                       timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, model: str, clients: int, per_client: int) -> tuple[list[float], float]:
    """Each client sends its requests one after another; returns each request's latency and the wall time."""
    import aiohttp

    latencies: list[float] = []

    def body(c: int, k: int) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": f"What is {c} + {k}?"}], "seed": 1}

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url + "/", connector=connector) as http:
        async def one_client(c: int) -> None:
            for k in range(per_client):
                began = time.perf_counter()
                async with http.post("chat/completions", json=body(c, k)) as response:
                    await response.read()
                    assert response.status == 200, await response.text()
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        return latencies, time.perf_counter() - began


async def client_cpu(url: str, library: str, requests: int = 1600) -> float:
    """Milliseconds of this process's CPU one chat completion costs with `library`, 16 at a time."""
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "What is 2 + 3?"}],
                       "temperature": 0.7, "max_tokens": 256, "seed": 5}).encode()
    headers = {"Authorization": "Bearer unused", "Content-Type": "application/json"}
    if library == "httpx":
        http: Any = httpx.AsyncClient(headers=headers, limits=httpx.Limits(max_connections=32))

        async def one() -> Any:
            return (await http.post(url + "/chat/completions", content=body)).json()
    else:
        import aiohttp

        http = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32))

        async def one() -> Any:
            async with http.post(url + "/chat/completions", data=body) as response:
                return json.loads(await response.read())
    try:
        for _ in range(32):
            await one()
        began = time.process_time()
        for _ in range(requests // 16):
            await asyncio.gather(*(one() for _ in range(16)))
        return 1000 * (time.process_time() - began) / requests
    finally:
        await (http.aclose() if library == "httpx" else http.close())


async def idle_wait_cpu(waits: int = 60) -> float:
    """Milliseconds of CPU one `asyncio.sleep(LATENCY)` costs: the machine's price of waiting once."""
    began = time.process_time()
    for _ in range(waits):
        await asyncio.sleep(LATENCY)
    return 1000 * (time.process_time() - began) / waits


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="self-consistency-1")
    args = parser.parse_args()
    instant_port = free_port()
    instant = start_fake_upstream(instant_port, 0.0)
    try:
        wait_until_up(f"http://127.0.0.1:{instant_port}/v1")
        clients_cpu = {library: round(asyncio.run(client_cpu(f"http://127.0.0.1:{instant_port}/v1", library)), 3)
                       for library in ("httpx", "aiohttp")}
    finally:
        instant.terminate()
        instant.wait(20)
    idle = round(asyncio.run(idle_wait_cpu()), 3)
    print("client CPU ms per completion", clients_cpu, "; CPU ms of one idle wait", idle, flush=True)
    upstream_port, server_port = free_port(), free_port()
    upstream = start_fake_upstream(upstream_port, LATENCY)
    server = start(SERVER, str(server_port), str(upstream_port))
    direct_url, served_url = f"http://127.0.0.1:{upstream_port}/v1", f"http://127.0.0.1:{server_port}/v1"
    rows = []
    try:
        wait_until_up(direct_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{served_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(load(served_url, args.model, 8, 4))  # warm: imports, compiled graphs, connections
        asyncio.run(load(direct_url, "fake", 8, 4))
        for clients, per_client in SHAPES:
            direct, direct_s = asyncio.run(load(direct_url, "fake", clients, per_client))
            before = cpu_seconds(server.pid)
            served, served_s = asyncio.run(load(served_url, args.model, clients, per_client))
            cpu = cpu_seconds(server.pid) - before
            row = {"clients": clients, "requests": len(served),
                   "direct_p50_ms": round(1000 * p(direct, 0.5), 2), "served_p50_ms": round(1000 * p(served, 0.5), 2),
                   "added_p50_ms": round(1000 * (p(served, 0.5) - p(direct, 0.5)), 2),
                   "direct_p95_ms": round(1000 * p(direct, 0.95), 2), "served_p95_ms": round(1000 * p(served, 0.95), 2),
                   "direct_per_s": round(len(direct) / direct_s, 1), "served_per_s": round(len(served) / served_s, 1),
                   "throughput_ratio": round((len(served) / served_s) / (len(direct) / direct_s), 3),
                   "server_cpu_ms_per_request": round(1000 * cpu / len(served), 2)}
            rows.append(row)
            print(row, flush=True)
    finally:
        for process in (server, upstream):
            process.terminate()
            process.wait(20)
    goals = {1: 2.0, 16: 5.0, 64: 20.0}
    met = {f"added_p50_at_{r['clients']}": r["added_p50_ms"] <= goals[r["clients"]] for r in rows}
    at64 = next(r for r in rows if r["clients"] == 64)
    met["throughput_at_64"] = at64["throughput_ratio"] >= 0.8
    met["cpu_per_request"] = max(r["server_cpu_ms_per_request"] for r in rows) <= 1.0
    print("written", record("serve", {"upstream_latency_s": LATENCY, "model": args.model, "rows": rows,
                                      "client_cpu_ms_per_completion": clients_cpu, "idle_wait_cpu_ms": idle,
                                      "goals": {"added_p50_ms": goals, "throughput_at_64": 0.8, "cpu_ms": 1.0},
                                      "met": met}))


if __name__ == "__main__":
    main()
