"""Two versions of manyminds measured side by side in one run: the warm-cache rerun and orchestration overhead.

A change to how strategies are assembled must not slow the hot paths. This
runs the same probe (`_probe` below) against this tree and against another
checkout (`--before PATH`, e.g. a `git worktree` of the commit before the
change), alternating the two in fresh processes so machine noise hits both
alike, and reports the ratios after / before:

- warm rerun: 1,000 questions x 16 samples, every sample from the cache
  (best of 5 per process);
- orchestration overhead: self-consistency over a Scripted backend with
  50 ms latency, 125 questions x 8 samples and 1,000 x 1, against the bare
  backend calls (best of 5).

    git worktree add ../before <commit>
    .venv/bin/python benchmarks/side_by_side.py --before ../before --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import record

HERE = Path(__file__).resolve().parent.parent

PROBE = r'''
import asyncio, json, tempfile, time
from pathlib import Path
from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.strategies import SelfConsistency
from manyminds.types import Task
import manyminds

def best(k, f):
    out = []
    for _ in range(k):
        t = time.perf_counter(); f(); out.append(time.perf_counter() - t)
    return min(out)

def reply(messages, params, index):
    return f"Adding step by step, the answer is {index % 3 + 10}."

tasks = [Task(question=f"What is {i} + {i + 1}?", gold=str(2 * i + 1)) for i in range(1000)]
sc = SelfConsistency(n=16)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "warm.db"
    sc.solve_many(tasks, backend=Scripted(reply), cache=path, concurrency=64, progress=False)
    def warm():
        backend = Scripted(reply)
        with GenerationCache(path) as cache:
            results = sc.solve_many(tasks, backend=backend, cache=cache, concurrency=64, progress=False)
        assert backend.calls == 0 and all(r.usage.cached_samples == 16 for r in results)
    warm_s = best(5, warm)

rows = {}
for questions, n in ((125, 8), (1000, 1)):
    strategy = SelfConsistency(n=n)
    params = strategy.sampling_params()
    qs = [Task(question=f"What is {i} + {i + 1}?") for i in range(questions)]
    def bare():
        backend = Scripted(["The answer is 3."], latency=0.05)
        async def go():
            await asyncio.gather(*(backend.generate(strategy.messages(t), params, n) for t in qs))
        asyncio.run(go())
    def managed():
        strategy.solve_many(qs, backend=Scripted(["The answer is 3."], latency=0.05), concurrency=questions, progress=False)
    rows[f"{questions}x{n}"] = {"bare_s": best(5, bare), "manyminds_s": best(5, managed)}
print(json.dumps({"where": manyminds.__file__, "warm_s": warm_s, "overhead": rows}))
'''


def probe(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, cwd=tree)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(data["where"]).resolve().is_relative_to(tree.resolve()), (data["where"], tree)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the version to compare with")
    parser.add_argument("--after", type=Path, default=HERE, help="the version measured (default this tree)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per version, alternated")
    parser.add_argument("--name", default="side_by_side", help="results/<name>.json")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for k in range(args.rounds):
        pair = (("before", args.before), ("after", args.after))
        for label, tree in pair if k % 2 == 0 else pair[::-1]:
            runs[label].append(probe(tree))
            print(label, json.dumps(runs[label][-1]), flush=True)

    def best(label: str, pick) -> float:
        return min(pick(r) for r in runs[label])

    summary = {"warm_rerun_s": {v: round(best(v, lambda r: r["warm_s"]), 4) for v in runs}}
    summary["warm_rerun_ratio"] = round(summary["warm_rerun_s"]["after"] / summary["warm_rerun_s"]["before"], 3)
    for shape in runs["after"][0]["overhead"]:
        over = {v: best(v, lambda r, s=shape: r["overhead"][s]["manyminds_s"] / r["overhead"][s]["bare_s"]) for v in runs}
        summary[f"overhead_{shape}_vs_bare"] = {v: round(x, 3) for v, x in over.items()}
        summary[f"overhead_{shape}_ratio"] = round(over["after"] / over["before"], 3)
    print(json.dumps(summary, indent=2))
    print("written", record(args.name, {"before": str(args.before), "after": str(args.after), "rounds": args.rounds,
                                        **summary, "runs": runs}))


if __name__ == "__main__":
    main()
