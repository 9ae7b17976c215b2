"""Confidence-weighted, confidence-filtered and selective voting on recorded pools, at no generation cost.

Every aggregator decides the same questions from the same stored samples, so each comparison with
the majority vote is paired: the difference in accuracy with a 95% bootstrap interval over
questions. Pools: the SmolLM2-135M arithmetic pool with token logprobs (benchmarks/results,
100 questions x 40 samples), and, where present, the papers' pools in ../shared/data/pools (Last
Letters from ESC, MedQA from ConSol: answers only, no logprobs). The selective vote is shown as a
risk-coverage table: the share of questions answered and the accuracy on them, per alpha.

DeepConf offline generates nothing less: every path was drawn (its token saving is the online
variant's). Tokens are the pool's own (sum of each path's tokens).

    .venv/bin/python benchmarks/confidence.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import RESULTS, paired, record

from manyminds.aggregators import get_aggregator
from manyminds.answers import same_answer
from manyminds.pools import load_pool

POOLS = {
    "arithmetic, SmolLM2-135M (logprobs)": RESULTS / "arithmetic_smollm2_40.jsonl",
    "Last Letters, GPT-3.5 (ESC)": Path(__file__).resolve().parents[2] / "shared/data/pools/last_letters_gpt35_40.jsonl",
    "MedQA, GPT-4o-mini (ConSol)": Path(__file__).resolve().parents[2] / "shared/data/pools/medqa_gpt4omini_40.jsonl",
}
VOTES = [("majority", {}), ("cisc", {}), ("deepconf", {"keep": 0.1}), ("deepconf", {"keep": 0.5}), ("run-off", {})]
ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.4)


def correct(question, answer: str | None) -> bool:
    return same_answer(question.task, answer, question.task.gold)


def run_pool(label: str, path: Path) -> dict:
    questions = [q for q in load_pool(path) if q.task.gold is not None]
    has_logprobs = any(c.generation is not None and c.generation.logprobs for q in questions for c in q.candidates)
    tokens = sum(c.generation.completion_tokens for q in questions for c in q.candidates if c.generation)
    base = np.array([correct(q, get_aggregator("majority")(q.task, q.candidates).answer) for q in questions])
    rows = []
    for name, params in VOTES if has_logprobs else VOTES[:1]:
        right = np.array([correct(q, get_aggregator(name, **params)(q.task, q.candidates).answer) for q in questions])
        mean, low, high = paired(base, right, resamples=2000)
        spec = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
        rows.append({"aggregator": spec, "accuracy": float(right.mean()), "vs_majority": mean, "low": low,
                     "high": high, "tokens": tokens})
    selective = []
    for alpha in ALPHAS:
        decide = get_aggregator("selective", alpha=alpha)
        answers = [decide(q.task, q.candidates).answer for q in questions]
        answered = [q for q, a in zip(questions, answers) if a is not None]
        hits = sum(correct(q, a) for q, a in zip(questions, answers) if a is not None)
        selective.append({"alpha": alpha, "coverage": len(answered) / len(questions),
                          "selective_accuracy": hits / len(answered) if answered else None})
    return {"pool": label, "questions": len(questions), "samples": len(questions[0].candidates),
            "logprobs": has_logprobs, "votes": rows, "selective": selective}


def markdown(results: list[dict]) -> str:
    lines = ["# Confidence-weighted, confidence-filtered and selective voting on recorded pools", "",
             "Same questions and samples for every aggregator; differences with the majority vote are paired, with "
             "95% bootstrap intervals over questions. `.venv/bin/python benchmarks/confidence.py`.", ""]
    for r in results:
        lines += [f"## {r['pool']}: {r['questions']} questions x {r['samples']} samples", "",
                  "| aggregator | accuracy | vs majority (95% CI) |", "|---|---:|---:|"]
        for v in r["votes"]:
            delta = "-" if v["aggregator"] == "majority" else \
                f"{100 * v['vs_majority']:+.1f} ({100 * v['low']:+.1f} to {100 * v['high']:+.1f})"
            lines.append(f"| {v['aggregator']} | {100 * v['accuracy']:.1f}% | {delta} |")
        if not r["logprobs"]:
            lines.append("")
            lines.append("No logprobs in this pool: only the majority vote and the selective vote apply.")
        lines += ["", "Selective vote (mixture SPRT, leader against runner-up):", "",
                  "| alpha | coverage | accuracy when answering |", "|---:|---:|---:|"]
        for s in r["selective"]:
            accuracy = "-" if s["selective_accuracy"] is None else f"{100 * s['selective_accuracy']:.1f}%"
            lines.append(f"| {s['alpha']:g} | {100 * s['coverage']:.1f}% | {accuracy} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    results = [run_pool(label, path) for label, path in POOLS.items() if path.is_file()]
    text = markdown(results)
    (RESULTS / "confidence.md").write_text(text)
    print(text)
    print("written", record("confidence", {"pools": results}))


if __name__ == "__main__":
    main()
