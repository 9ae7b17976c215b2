"""Many endpoints: a fleet of 2 OpenAI-compatible servers against 1, on latency-bound fake servers.

Each fake server (its own process on 127.0.0.1) answers a chat completion after 200 ms and serves at
most 4 at once (a server's batch: more wait), so one server does at most 20 requests a second. One
`OpenAICompatible` sends 160 one-sample requests, 32 at once, to one server, then to a fleet of two
(`base_url=[A, B]`): throughput ratio fleet / one. Goal (issue #24): >= 1.9x.

    .venv/bin/python benchmarks/scale.py
"""

from __future__ import annotations

import asyncio
import time

from _common import free_port, record, start_fake_upstream

LATENCY = 0.2
CAPACITY = 4
REQUESTS = 160
CONCURRENT = 32

def wait_up(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("a fake server did not start")


async def throughput(urls: list[str]) -> float:
    from manyminds.backends import OpenAICompatible
    from manyminds.types import Message, SamplingParams

    backend = OpenAICompatible(model="fake", base_url=urls, native_n=False, max_concurrency=CONCURRENT)
    limit = asyncio.Semaphore(CONCURRENT)
    params = SamplingParams(max_tokens=8)

    async def one(k: int) -> None:
        async with limit:
            await backend.generate([Message(role="user", content=f"What is {k} + 1?")], params, 1)

    began = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(REQUESTS)))
    return REQUESTS / (time.perf_counter() - began)


def main() -> None:
    ports = [free_port(), free_port()]
    servers = [start_fake_upstream(p, LATENCY, CAPACITY) for p in ports]
    try:
        for port in ports:
            wait_up(port)
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        one = asyncio.run(throughput(urls[:1]))
        two = asyncio.run(throughput(urls))
    finally:
        for server in servers:
            server.terminate()
            server.wait(20)
    row = {"one_endpoint_per_s": round(one, 1), "two_endpoints_per_s": round(two, 1), "ratio": round(two / one, 3),
           "server_latency_s": LATENCY, "server_capacity": CAPACITY, "requests": REQUESTS, "concurrent": CONCURRENT,
           "goal": "ratio >= 1.9"}
    print(row)
    print("written", record("scale", row))


if __name__ == "__main__":
    main()
