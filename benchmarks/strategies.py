"""All strategies on the built-in arithmetic set with the embedded model, at an equal budget.

Reports accuracy, samples and tokens per strategy as a table, written to
results/strategies.json and results/strategies.md. Generations are cached in
.manyminds/bench.db, so a rerun costs nothing.

    .venv/bin/python benchmarks/strategies.py [--limit 20] [--budget 8] [--level single-digit]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import RESULTS, record

from manyminds.backends import Local
import manyminds as mm
from manyminds.cache import GenerationCache
from manyminds.strategies import STRATEGIES, make


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--level", default="single-digit")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--cache", default=".manyminds/bench.db")
    args = parser.parse_args()

    settings = dict(max_tokens=args.max_tokens, prompt="direct")
    methods = {"single sample": make("self-consistency", 1, **settings)}
    for name, cls in STRATEGIES.items():
        extra = {"max_tokens": args.max_tokens * 4} if name == "idiv-se" else {}  # k answers in one completion
        given = {k: v for k, v in {**settings, **extra}.items() if k in cls.settings()}  # div-se asks no "prompt"
        methods[name] = make(name, args.budget, **given)

    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with GenerationCache(args.cache) as cache:
        backend = Local()
        for label, strategy in methods.items():
            start = time.perf_counter()
            (s,) = mm.bench.run("arithmetic", {label: strategy}, backend=backend, cache=cache, split=args.level,
                                limit=args.limit, progress=False).runs
            elapsed = time.perf_counter() - start
            fallbacks = sum(any("fell back" in t for t in r.trace) for r in s.results)
            rows.append({
                "strategy": label, "accuracy": round(s.accuracy, 3), "correct": int(s.correct),
                "questions": s.questions, "generations_per_question": round(s.usage.samples / s.questions, 2),
                "completion_tokens": s.usage.completion_tokens, "prompt_tokens": s.usage.prompt_tokens,
                "tokens_per_question": round(s.usage.total_tokens / s.questions, 1),
                "fallbacks": fallbacks, "seconds": round(elapsed, 1),
            })
            print(rows[-1], flush=True)

    lines = [
        f"# Strategies on arithmetic ({args.level}, {args.limit} questions), embedded SmolLM2-135M, budget {args.budget}",
        "",
        "| strategy | accuracy | generations/question | tokens/question | selection/synthesis fallbacks |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['accuracy']:.0%} ({r['correct']}/{r['questions']}) | "
                     f"{r['generations_per_question']} | {r['tokens_per_question']} | {r['fallbacks']} |")
    (RESULTS / "strategies.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written", record("strategies", {"level": args.level, "limit": args.limit, "budget": args.budget,
                                           "max_tokens": args.max_tokens, "rows": rows}))


if __name__ == "__main__":
    main()
