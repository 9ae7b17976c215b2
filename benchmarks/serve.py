"""`manyminds serve` against calling the upstream directly: latency it adds, throughput, and its CPU.

The upstream is a fake OpenAI-compatible server (its own process on 127.0.0.1) that answers every
chat completion after 50 ms. The same aiohttp clients send the same kind of requests, one after
another each, at 1, 16 and 64 clients at once: directly to the upstream (`model` its own), and
through `manyminds serve` (its own process, backend `openai:model=fake,base_url=UPSTREAM,
max_concurrency=128`) as `self-consistency-1`, one upstream call per request, so the difference is
what the server costs. Three configurations go through the same rounds:

- `served`: the server without a cache (every request generates);
- `served_cache`: with a cache file, as `manyminds serve` runs by default; the requests are seeded
  and every question is new, so each request generates its sample and stores it;
- `floor`: a do-nothing Python proxy (uvicorn with httptools and uvloop, aiohttp to the upstream,
  the body passed through unread): what any Python server in the middle costs on this machine.

Each shape runs three rounds, direct and the three configurations in a rotating order, so drift
on a shared machine falls on every arm alike. Reported per shape and configuration, pooled over
the rounds: p50 and p95 latency, the p50 it adds over direct with a bootstrap 95% interval
(requests resampled within each arm) and the range of the rounds' own figures, requests per second
and their ratio to direct, and the process's CPU time per request (from /proc). The load generator
shares the machine's cores with every server, as a deployment's clients would not.

Goals (issue #23), judged on `served`: added p50 <= 2 ms at 1 client, <= 5 ms at 16, <= 20 ms at 64;
throughput at 64 clients >= 0.8x direct; server CPU <= 1 ms a request.

Also measured, for the choice of HTTP client (`backends/openai_compat.py`): the CPU one chat
completion costs the calling process with httpx and with aiohttp, 16 at a time against the same
upstream answering at once. And the CPU of `asyncio.sleep(0.05)`, an idle wait and a wake-up,
which every request pays at least twice (for the client's request and for the upstream's reply);
and the server's app called in this process (no sockets, a Scripted backend), warm and with a
50 ms wait in each request: what the same work costs when it follows an idle wait, as a lone
client's requests do.

    .venv/bin/python benchmarks/serve.py [--model self-consistency-1] [--rounds 3]
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
SHAPES = ((1, 60), (16, 40), (64, 30))  # (clients, requests per client)
CONFIGURATIONS = ("served", "served_cache", "floor")

SERVER = r'''
import sys, uvicorn
from manyminds.server import ServerConfig, create_app
upstream = f"openai:model=fake,base_url=http://127.0.0.1:{sys.argv[2]}/v1,max_concurrency=128"
app = create_app(ServerConfig(backend=upstream, cache=sys.argv[3] if len(sys.argv) > 3 else None,
                              max_concurrency=128, max_queue=256, freeze_startup=True))  # as `manyminds serve`
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''

FLOOR = r'''
import sys, aiohttp, uvicorn
target, http = f"http://127.0.0.1:{sys.argv[2]}/v1/chat/completions", None

async def app(scope, receive, send):
    global http
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return await send({"type": "http.response.body", "body": b"{}"})
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    http = http or aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    async with http.post(target, data=body, headers={"Content-Type": "application/json"}) as reply:
        raw = await reply.read()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''
"""The floor: a Python proxy that does nothing but pass the body to the upstream and its reply back."""


def start(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OPENAI_API_KEY": "unused"}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env)


def wait_until_up(url: str) -> None:
    """Until GET /models answers 200 (the fake upstream answers every path, the floor every GET)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, model: str, clients: int, per_client: int, tag: str = "") -> tuple[list[float], float]:
    """Each client sends its requests one after another; returns each request's latency and the wall
    time. `tag` makes the questions new (a cache has none of them)."""
    import aiohttp

    latencies: list[float] = []

    def body(c: int, k: int) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": f"What is {c} + {k}?{tag}"}], "seed": 1}

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


async def in_process_cpu(latency: float, requests: int = 300) -> float:
    """Milliseconds of CPU one request costs the server's app called in this process (no sockets,
    a Scripted backend that answers after `latency`): with latency 0 the app's own work, warm; with
    50 ms the same work after an idle wait, as a lone client's requests find it."""
    from manyminds.backends import Scripted
    from manyminds.server import ServerConfig, create_app

    app = create_app(ServerConfig(backend=Scripted(["The answer is 5."], latency=latency), max_concurrency=8))
    never = asyncio.Event()

    async def call(k: int) -> None:
        body = json.dumps({"model": "self-consistency-1", "seed": 1,
                           "messages": [{"role": "user", "content": f"What is {k} + 2?"}]}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 2)}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async with app.router.lifespan_context(app):
        for k in range(20):
            await call(-k)
        began = time.process_time()
        for k in range(requests):
            await call(k)
        return 1000 * (time.process_time() - began) / requests


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def added_p50(direct: list[float], served: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Milliseconds the served p50 adds over the direct one, with a percentile bootstrap 95% interval
    (each arm's requests resampled on their own: the arms are not paired request by request)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    d, s = np.asarray(direct), np.asarray(served)
    boots = (np.median(s[rng.integers(0, len(s), (resamples, len(s)))], axis=1)
             - np.median(d[rng.integers(0, len(d), (resamples, len(d)))], axis=1))
    return (round(1000 * float(np.median(s) - np.median(d)), 2), round(1000 * float(np.quantile(boots, 0.025)), 2),
            round(1000 * float(np.quantile(boots, 0.975)), 2))


def measure(direct_url: str, servers: dict[str, tuple[str, "subprocess.Popen[bytes]"]], model: str,
            rounds: int) -> list[dict[str, Any]]:
    """Every shape, `rounds` rounds of direct and each configuration in a rotating order; a row per
    shape and configuration, pooled over the rounds."""
    rows = []
    arms = ["direct", *servers]
    for clients, per_client in SHAPES:
        latencies: dict[str, list[float]] = {arm: [] for arm in arms}
        wall = {arm: 0.0 for arm in arms}
        cpu = {arm: 0.0 for arm in servers}
        per_round: dict[str, list[tuple[float, float]]] = {arm: [] for arm in servers}
        for r in range(rounds):
            order = arms[r % len(arms):] + arms[:r % len(arms)]
            got: dict[str, tuple[list[float], float]] = {}
            for arm in order:
                tag = f" ({clients}/{r}/{arm})"
                if arm == "direct":
                    got[arm] = asyncio.run(load(direct_url, "fake", clients, per_client, tag))
                    continue
                url, process = servers[arm]
                before = cpu_seconds(process.pid)
                got[arm] = asyncio.run(load(url, "fake" if arm == "floor" else model, clients, per_client, tag))
                cpu[arm] += cpu_seconds(process.pid) - before
            for arm, (lat, seconds) in got.items():
                latencies[arm] += lat
                wall[arm] += seconds
            for arm in servers:
                per_round[arm].append((1000 * (p(got[arm][0], 0.5) - p(got["direct"][0], 0.5)),
                                       (len(got[arm][0]) / got[arm][1]) / (len(got["direct"][0]) / got["direct"][1])))
        direct_rate = len(latencies["direct"]) / wall["direct"]
        for arm in servers:
            added, low, high = added_p50(latencies["direct"], latencies[arm])
            rate = len(latencies[arm]) / wall[arm]
            row = {"clients": clients, "configuration": arm, "requests": len(latencies[arm]),
                   "direct_p50_ms": round(1000 * p(latencies["direct"], 0.5), 2),
                   "p50_ms": round(1000 * p(latencies[arm], 0.5), 2),
                   "added_p50_ms": added, "added_p50_interval_ms": [low, high],
                   "added_p50_rounds_ms": [round(min(a for a, _ in per_round[arm]), 2),
                                           round(max(a for a, _ in per_round[arm]), 2)],
                   "direct_p95_ms": round(1000 * p(latencies["direct"], 0.95), 2),
                   "p95_ms": round(1000 * p(latencies[arm], 0.95), 2),
                   "direct_per_s": round(direct_rate, 1), "per_s": round(rate, 1),
                   "throughput_ratio": round(rate / direct_rate, 3),
                   "throughput_ratio_rounds": [round(min(t for _, t in per_round[arm]), 3),
                                               round(max(t for _, t in per_round[arm]), 3)],
                   "cpu_ms_per_request": round(1000 * cpu[arm] / len(latencies[arm]), 2)}
            rows.append(row)
            print(row, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, for the closing note and the docs."""
    lines = ["| clients | configuration | added p50 ms [95% CI] (rounds) | p95 ms direct / through | "
             "throughput vs direct (rounds) | CPU ms / request |", "|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["added_p50_interval_ms"]
        rlo, rhi = r["added_p50_rounds_ms"]
        tlo, thi = r["throughput_ratio_rounds"]
        lines.append(f"| {r['clients']} | {r['configuration']} | {r['added_p50_ms']} [{lo}, {hi}] ({rlo} to {rhi}) | "
                     f"{r['direct_p95_ms']} / {r['p95_ms']} | {r['throughput_ratio']}x ({tlo} to {thi}) | "
                     f"{r['cpu_ms_per_request']} |")
    return "\n".join(lines)


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="self-consistency-1")
    parser.add_argument("--rounds", type=int, default=3)
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
    app_cpu = {"warm": round(asyncio.run(in_process_cpu(0.0)), 3),
               "after_idle_wait": round(asyncio.run(in_process_cpu(LATENCY)), 3)}
    print("client CPU ms per completion", clients_cpu, "; CPU ms of one idle wait", idle,
          "; the app's CPU ms a request in process", app_cpu, flush=True)
    upstream_port = free_port()
    upstream = start_fake_upstream(upstream_port, LATENCY)
    direct_url = f"http://127.0.0.1:{upstream_port}/v1"
    processes: list[subprocess.Popen[bytes]] = [upstream]
    with tempfile.TemporaryDirectory() as folder:
        try:
            servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
            for arm in CONFIGURATIONS:
                port = free_port()
                script, extra = {"served": (SERVER, []), "served_cache": (SERVER, [str(Path(folder) / "cache.db")]),
                                 "floor": (FLOOR, [])}[arm]
                servers[arm] = (f"http://127.0.0.1:{port}/v1", start(script, str(port), str(upstream_port), *extra))
                processes.append(servers[arm][1])
            wait_until_up(direct_url)
            for arm, (url, _) in servers.items():
                wait_until_up(url)
                asyncio.run(load(url, "fake" if arm == "floor" else args.model, 8, 4, " (warm)"))  # imports, connections
            asyncio.run(load(direct_url, "fake", 8, 4))
            rows = measure(direct_url, servers, args.model, args.rounds)
        finally:
            for process in processes:
                process.terminate()
                process.wait(20)
    print(table(rows))
    goals = {1: 2.0, 16: 5.0, 64: 20.0}
    served = [r for r in rows if r["configuration"] == "served"]
    met = {f"added_p50_at_{r['clients']}": r["added_p50_ms"] <= goals[r["clients"]] for r in served}
    at64 = next(r for r in served if r["clients"] == 64)
    met["throughput_at_64"] = at64["throughput_ratio"] >= 0.8
    met.update({f"cpu_at_{r['clients']}": r["cpu_ms_per_request"] <= 1.0 for r in served})
    print("met", met)
    print("written", record("serve", {"upstream_latency_s": LATENCY, "model": args.model, "rounds": args.rounds,
                                      "rows": rows, "client_cpu_ms_per_completion": clients_cpu,
                                      "idle_wait_cpu_ms": idle, "app_cpu_ms_in_process": app_cpu,
                                      "goals": {"added_p50_ms": goals, "throughput_at_64": 0.8, "cpu_ms": 1.0},
                                      "met": met}))


if __name__ == "__main__":
    main()
