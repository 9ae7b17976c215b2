"""Record a pool with the embedded model: arithmetic questions x 40 samples, with token logprobs.

    .venv/bin/python benchmarks/record_pool.py [--questions 100] [--samples 40]

Writes benchmarks/results/arithmetic_smollm2_40.jsonl (native pool format);
generations are cached in .manyminds/pool.db, so an interrupted recording resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import RESULTS

from manyminds.backends import Local
from manyminds.bench import arithmetic_tasks
from manyminds.pools import write_pool
from manyminds.strategies import SelfConsistency


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--level", default="single-digit")
    args = parser.parse_args()
    tasks = arithmetic_tasks(args.level, args.questions, seed=7)
    strategy = SelfConsistency(n=args.samples, prompt="direct", temperature=0.7, max_tokens=48, logprobs=True)
    Path(".manyminds").mkdir(exist_ok=True)
    results = strategy.solve_many(tasks, backend=Local(), cache=".manyminds/pool.db", progress=True)
    out = RESULTS / f"arithmetic_smollm2_{args.samples}.jsonl"
    print("wrote", write_pool(out, results), "questions to", out)


if __name__ == "__main__":
    main()
