"""DeepConf online against self-consistency at the same n: accuracy, tokens and wall time.

Part 1, on the recorded SmolLM2-135M arithmetic pool (100 questions x 40 paths with token logprobs;
no generation cost): the `deepconf-online` strategy runs over the pool's own paths (sample i of a
question is the pool's path i), so each stopped path is exactly the prefix the embedded model
would have decoded (a stopped sample is the prefix of the full one: same seed). Tokens are the
tokens each path decodes (its prefix when stopped), against majority@40 over the full paths.
Differences are paired over questions with 95% bootstrap intervals.

Part 2 (`--generate`), on GSM8K with the embedded model: self-consistency and deepconf-online at
the same n, drawn fresh (no cache), tokens generated (usage) and wall time, and how often the two
give the same answer.

    .venv/bin/python benchmarks/online_stopping.py [--generate --tasks 40 --n 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import RESULTS, paired, record

from manyminds import datasets
from manyminds.aggregators import get_aggregator
from manyminds.answers import same_answer
from manyminds.backends import Scripted
from manyminds.pools import load_pool
from manyminds.session import Session
from manyminds.strategies import make
from manyminds.types import Generation, Result

POOL = RESULTS / "arithmetic_smollm2_40.jsonl"
SETTINGS = [  # (label, deepconf-online settings)
    ("DeepConf-low (keep 10%), window 4", {"keep": 0.1, "window": 4}),
    ("DeepConf-high (keep 90%), window 4", {"keep": 0.9, "window": 4}),
    ("DeepConf-low (keep 10%), window 8", {"keep": 0.1, "window": 8}),
    ("DeepConf-high (keep 90%), window 8", {"keep": 0.9, "window": 8}),
]


def decoded(result: Result) -> int:
    """Tokens the paths decoded: a stopped path's prefix, a full path's every token."""
    return sum(len(c.generation.logprobs or ()) for c in result.candidates if c.generation is not None)


def on_the_pool() -> dict:
    questions = [q for q in load_pool(POOL) if q.task.gold is not None]
    by_question = {q.task.question: sorted(q.candidates, key=lambda c: c.index) for q in questions}
    n = min(len(q.candidates) for q in questions)

    def replay(messages, params, index) -> Generation:
        paths = next(p for question, p in by_question.items() if question in messages[-1].content)
        return paths[index].generation.model_copy(update={"index": index})

    majority = get_aggregator("majority")
    base = np.array([same_answer(q.task, majority(q.task, q.candidates).answer, q.task.gold) for q in questions])
    base_tokens = sum(len(c.generation.logprobs or ()) for q in questions for c in q.candidates)
    rows = [{"method": f"majority@{n} (self-consistency)", "accuracy": float(base.mean()), "tokens": base_tokens,
             "saved": 0.0, "vs_majority": [0.0, 0.0, 0.0], "stopped_paths": 0, "paths": len(questions) * n}]
    for label, settings in SETTINGS:
        for consensus in (1.0, 0.95):
            strategy = make("deepconf-online", n, warmup=8, consensus=consensus, wave=8, **settings)
            with Session(Scripted(replay), concurrency=4, progress=False) as session:
                results = session.solve_many(strategy, [q.task for q in questions])
            right = np.array([same_answer(r.task, r.answer, r.task.gold) for r in results])
            tokens = sum(decoded(r) for r in results)
            stopped = sum(1 for r in results for c in r.candidates if c.generation.finish_reason == "aborted")
            rows.append({"method": f"{label}, {'all 40 paths' if consensus == 1 else 'consensus 0.95'}",
                         "accuracy": float(right.mean()), "tokens": tokens, "saved": 1 - tokens / base_tokens,
                         "vs_majority": list(paired(base, right)), "stopped_paths": stopped,
                         "paths": sum(r.usage.samples for r in results)})
    return {"questions": len(questions), "n": n, "rows": rows}


def generated(tasks: int, n: int) -> dict:
    questions = datasets.load("gsm8k", limit=tasks)
    common = dict(temperature=0.7, max_tokens=256, seed=1)
    runs = {}
    with Session("local", concurrency=1, progress=False) as session:
        for label, strategy in (("self-consistency", make("self-consistency", n, **common)),
                                ("deepconf-online", make("deepconf-online", n, window=16, consensus=1.0, **common))):
            start = time.perf_counter()
            results = session.solve_many(strategy, questions)
            runs[label] = {"seconds": time.perf_counter() - start, "results": results}
    sc, dc = runs["self-consistency"]["results"], runs["deepconf-online"]["results"]
    a = np.array([same_answer(r.task, r.answer, r.task.gold) for r in sc])
    b = np.array([same_answer(r.task, r.answer, r.task.gold) for r in dc])
    sc_tokens = sum(r.usage.completion_tokens for r in sc)
    dc_tokens = sum(r.usage.completion_tokens for r in dc)
    return {"questions": len(questions), "n": n, "window": 16,
            "self_consistency": {"accuracy": float(a.mean()), "tokens": sc_tokens,
                                 "seconds": round(runs["self-consistency"]["seconds"], 1)},
            "deepconf_online": {"accuracy": float(b.mean()), "tokens": dc_tokens,
                                "seconds": round(runs["deepconf-online"]["seconds"], 1),
                                "stopped_paths": sum(1 for r in dc for c in r.candidates
                                                     if c.generation.finish_reason == "aborted")},
            "token_ratio": dc_tokens / sc_tokens,
            "time_ratio": runs["deepconf-online"]["seconds"] / runs["self-consistency"]["seconds"],
            "same_answer": float(np.mean([x.answer == y.answer for x, y in zip(sc, dc)])),
            "vs_self_consistency": list(paired(a, b))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generate", action="store_true")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    pool = on_the_pool()
    data = {"pool": pool}
    lines = [f"# DeepConf online against self-consistency ({pool['questions']} arithmetic questions x "
             f"{pool['n']} SmolLM2-135M paths, warm-up 8, waves of 8)", "",
             "Command: `.venv/bin/python benchmarks/online_stopping.py`", "",
             "| method | accuracy | vs majority [95% CI] | tokens decoded | saved | paths drawn | stopped |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in pool["rows"]:
        d = row["vs_majority"]
        lines.append(f"| {row['method']} | {row['accuracy']:.1%} | {d[0]:+.1%} [{d[1]:+.1%}, {d[2]:+.1%}] | "
                     f"{row['tokens']:,} | {row['saved']:.0%} | {row['paths']:,} | {row['stopped_paths']:,} |")
    if args.generate:
        gen = generated(args.tasks, args.n)
        data["generated"] = gen
        sc, dc = gen["self_consistency"], gen["deepconf_online"]
        d = gen["vs_self_consistency"]
        lines += ["", f"## Generated: GSM8K, {gen['questions']} questions, n = {gen['n']}, embedded model "
                      f"(`--generate --tasks {args.tasks} --n {args.n}`)", "",
                  "| method | accuracy | tokens generated | wall time |", "|---|---:|---:|---:|",
                  f"| self-consistency | {sc['accuracy']:.1%} | {sc['tokens']:,} | {sc['seconds']:.0f} s |",
                  f"| deepconf-online (window 16, all n) | {dc['accuracy']:.1%} | {dc['tokens']:,} | "
                  f"{dc['seconds']:.0f} s |", "",
                  f"Tokens {gen['token_ratio']:.2f}x and wall time {gen['time_ratio']:.2f}x self-consistency's; "
                  f"{dc['stopped_paths']} paths stopped; the same answer on {gen['same_answer']:.0%} of questions; "
                  f"accuracy difference {d[0]:+.1%} [{d[1]:+.1%}, {d[2]:+.1%}]."]
    record("online_stopping", data)
    (RESULTS / "online_stopping.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
