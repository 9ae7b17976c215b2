"""Beyond one process: a fleet of endpoints, and a benchmark run sharded over Ray actors.

Fleet: each fake server (its own process on 127.0.0.1) answers a chat completion after 200 ms and
serves at most 4 at once (a server's batch: more wait), so one server does at most 20 requests a
second. One `OpenAICompatible` sends 160 one-sample requests, 32 at once, to one server, then to a
fleet of two (`base_url=[A, B]`): throughput ratio fleet / one. Goal (issue #24): >= 1.9x.

Ray: `bench.run` over 320 questions (self-consistency with one sample) on a Scripted backend whose
every call takes 200 ms, 4 questions in flight per process: in this process, then over 1, 2 and 4
Ray actors (Ray started here, 4 logical CPUs). Questions per second in the steady state (from the
first chunk recorded to the last, so Ray's start and the actors' imports, a few seconds once per
run, are left out; the total is reported too), the driver's cache writes, scoring and recording
included. Goals: >= 1.9x at 2 actors, >= 3.6x at 4, against one process. Also the driver's CPU per
question (what bounds how many actors one driver can feed).

    .venv/bin/python benchmarks/scale.py [--skip-fleet] [--skip-ray]
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


QUESTIONS = 320
IN_FLIGHT = 4


def bench_throughput(workers: int | None) -> dict:
    """One bench run in this process (workers None) or over `workers` Ray actors."""
    import tempfile

    from manyminds.backends.scripted import Scripted
    from manyminds.bench.runner import run
    from manyminds.strategies import make
    from manyminds.types import Task

    tasks = [Task(question=f"What is {k} + 1?", gold=str(k + 1), id=f"q{k}") for k in range(QUESTIONS)]
    stamps: list[float] = []

    def progress(finished: int) -> None:
        stamps.append(time.perf_counter())

    options = {} if workers is None else {"executor": "ray", "workers": workers}
    with tempfile.TemporaryDirectory() as folder:
        cpu, began = time.process_time(), time.perf_counter()
        report = run(tasks, {"sc": make("self-consistency", 1, seed=1)}, progress=progress, concurrency=IN_FLIGHT,
                     backend=Scripted(lambda m, p, i: "The answer is 2.", latency=LATENCY),
                     cache=f"{folder}/c.db", **options)
        total, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert all(r.error is None for r in report.runs[0].records)
    steady = (len(stamps) - 1) * IN_FLIGHT / (stamps[-1] - stamps[0])  # chunks after the first, per second
    return {"workers": workers or 0, "questions_per_s": round(steady, 2), "total_s": round(total, 2),
            "driver_cpu_ms_per_question": round(1000 * cpu / QUESTIONS, 3)}


def ray_rows() -> list[dict]:
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rows = [bench_throughput(None)] + [bench_throughput(w) for w in (1, 2, 4)]
    finally:
        ray.shutdown()
    base = rows[0]["questions_per_s"]
    for row in rows:
        row["ratio"] = round(row["questions_per_s"] / base, 3)
        print(row, flush=True)
    return rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    result: dict = {}
    if not args.skip_fleet:
        result["fleet"] = fleet()
    if not args.skip_ray:
        rows = ray_rows()
        by = {r["workers"]: r["ratio"] for r in rows}
        result["ray"] = {"rows": rows, "call_latency_s": LATENCY, "questions": QUESTIONS, "in_flight_per_process": IN_FLIGHT,
                         "goal": "ratio >= 1.9 at 2 actors, >= 3.6 at 4", "met": by[2] >= 1.9 and by[4] >= 3.6}
    print("written", record("scale", result))


def fleet() -> dict:
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
    return row


if __name__ == "__main__":
    main()
