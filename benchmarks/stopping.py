"""Early stopping on a batching engine and on a sequential one: wall time and samples.

Replies come from the recorded arithmetic pool (SmolLM2-135M, 100 questions x 40
samples, `results/arithmetic_smollm2_40.jsonl`), served by a Scripted backend
with a latency model:

- batching: every call costs one round trip (200 ms) plus 2 ms per sample, and
  calls run concurrently (vLLM, a GPU server); `batch_width` 64;
- sequential: one engine decodes one sample at a time, 20 ms per sample plus
  5 ms per call, calls queue behind each other (the embedded llama.cpp model);
  `batch_width` 1.

Methods, at a cap of 16 samples: plain self-consistency (one request of 16),
Adaptive-Consistency and ESC with the rule's own waves (`speculate=False`, as
before waves followed the backend) and with waves sized for the backend.
Goals: on the batching model, Adaptive-Consistency within 1.5x the wall time of
one call while keeping its sample savings; on the sequential model, no more
samples than before.

    .venv/bin/python benchmarks/stopping.py
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from _common import RESULTS, record

from manyminds.answers import is_correct
from manyminds.backends import Scripted
from manyminds.stopping import ESC, AdaptiveConsistency
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

CAP = 16
POOL = RESULTS / "arithmetic_smollm2_40.jsonl"


def load(limit: int) -> tuple[list[Task], dict[str, list[str]]]:
    tasks, texts = [], {}
    for line in POOL.read_text().splitlines()[:limit]:
        row = json.loads(line)
        tasks.append(Task(question=row["question"], gold=row["gold"], id=row["id"]))
        texts[row["question"]] = [s["text"] for s in row["samples"]]
    return tasks, texts


class Engine(Scripted):
    """Scripted replies from the pool, with a latency model; `serial` queues calls on one engine."""

    def __init__(self, texts: dict[str, list[str]], *, latency: float, per_sample: float, batch_width: int,
                 serial: bool) -> None:
        def reply(messages, params, index):
            question = messages[-1].content.split("\n")[0]
            return texts[question][index]

        super().__init__(reply, latency=latency, per_sample_latency=per_sample, batch_width=batch_width)
        self._serial = asyncio.Lock() if serial else None

    async def generate(self, messages, params, n=1, first_index=0):
        if self._serial is None:
            return await super().generate(messages, params, n, first_index)
        async with self._serial:
            return await super().generate(messages, params, n, first_index)


MODELS = {
    "batching": dict(latency=0.200, per_sample=0.002, batch_width=64, serial=False),
    "sequential": dict(latency=0.005, per_sample=0.020, batch_width=1, serial=True),
}


def methods() -> dict[str, SelfConsistency]:
    base = SelfConsistency(n=CAP, prompt="direct", max_tokens=64)
    return {
        "plain n=16": base,
        "AC, rule's waves": base.model_copy(update={"stop": AdaptiveConsistency(speculate=False)}),
        "AC, sized waves": base.model_copy(update={"stop": AdaptiveConsistency()}),
        "ESC, rule's waves": base.model_copy(update={"stop": ESC(speculate=False)}),
        "ESC, sized waves": base.model_copy(update={"stop": ESC()}),
    }


def run(model: str, questions: int) -> list[dict]:
    tasks, texts = load(questions)
    rows = []
    for strategy in methods().values():  # warm up: imports and compiled graphs, outside the timings
        strategy.solve_many(tasks[:2], backend=Engine(texts, **{**MODELS[model], "latency": 0, "per_sample": 0}),
                            progress=False)
    for label, strategy in methods().items():
        engine = Engine(texts, **MODELS[model])
        start = time.perf_counter()
        results = strategy.solve_many(tasks, backend=engine, concurrency=len(tasks), progress=False)
        wall = time.perf_counter() - start
        used = sum(r.usage.samples for r in results)
        rows.append({
            "model": model, "method": label, "questions": len(tasks), "wall_s": round(wall, 3),
            "calls": engine.calls, "samples_used_per_q": round(used / len(tasks), 2),
            "samples_drawn_per_q": round(engine.samples_generated / len(tasks), 2),
            "accuracy": round(sum(bool(is_correct(r)) for r in results) / len(tasks), 3),
        })
        print(rows[-1])
    plain = rows[0]["wall_s"]
    for row in rows:
        row["wall_vs_plain"] = round(row["wall_s"] / plain, 2)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| engine | method | wall (s) | x plain | calls | samples used / q | samples drawn / q | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['wall_s']:.2f} | {r['wall_vs_plain']:.2f} | {r['calls']} | "
                     f"{r['samples_used_per_q']:.2f} | {r['samples_drawn_per_q']:.2f} | {r['accuracy']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    rows = run("batching", 100) + run("sequential", 40)
    by = {(r["model"], r["method"]): r for r in rows}
    goals = {
        "batching: AC sized wall / plain (goal <= 1.5)": by[("batching", "AC, sized waves")]["wall_vs_plain"],
        "batching: AC sized samples used / plain": round(
            by[("batching", "AC, sized waves")]["samples_used_per_q"] / CAP, 2),
        "sequential: AC sized drawn - rule's waves drawn (goal <= 0)": round(
            by[("sequential", "AC, sized waves")]["samples_drawn_per_q"]
            - by[("sequential", "AC, rule's waves")]["samples_drawn_per_q"], 2),
        "sequential: ESC sized drawn - rule's waves drawn (goal <= 0)": round(
            by[("sequential", "ESC, sized waves")]["samples_drawn_per_q"]
            - by[("sequential", "ESC, rule's waves")]["samples_drawn_per_q"], 2),
    }
    record("stopping", {"cap": CAP, "models": MODELS, "rows": rows, "goals": goals})
    text = (f"# Early stopping on a batching and a sequential engine (cap {CAP})\n\n"
            f"Replies from the recorded SmolLM2-135M arithmetic pool; latency models in benchmarks/stopping.py. "
            f"One run; ratios within it.\n\n{table(rows)}\n\n"
            + "\n".join(f"- {k}: **{v}**" for k, v in goals.items()) + "\n")
    Path(RESULTS / "stopping.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
