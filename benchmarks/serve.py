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

    .venv/bin/python benchmarks/serve.py [--model self-consistency-1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import free_port, record, start_fake_upstream

LATENCY = 0.05
SHAPES = ((1, 60), (16, 25), (64, 10))  # (clients, requests per client)

SERVER = r'''
import sys, uvicorn
from manyminds.server import ServerConfig, create_app
app = create_app(ServerConfig(backend=f"openai:fake@http://127.0.0.1:{sys.argv[2]}/v1", max_concurrency=128,
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


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="self-consistency-1")
    args = parser.parse_args()
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
                                      "goals": {"added_p50_ms": goals, "throughput_at_64": 0.8, "cpu_ms": 1.0},
                                      "met": met}))


if __name__ == "__main__":
    main()
