"""Aggregators and stopping rules on recorded sample pools: no generation at all.

Pools: the two published ones in ../shared/data/pools (GPT-3.5 Last Letters,
500 x 40 texts; GPT-4o-mini MedQA, 1,273 x 40 answers) and one recorded
with the embedded model on the arithmetic set with token logprobs
(results/arithmetic_smollm2_40.jsonl, by benchmarks/record_pool.py).

For every pool: majority vote at n = 1..40, Adaptive-Consistency and ESC
(each capped at 40); on the logprob pool also the logprob-weighted vote and
RPC. Every figure is averaged over PERMUTATIONS seeded shuffles of each
question's samples, so that "the first n samples" is not one arbitrary
draw. Writes results/aggregators.{json,md} and results/aggregators.png.

    .venv/bin/python benchmarks/aggregators.py
"""

from __future__ import annotations

import random
from pathlib import Path

from _common import RESULTS, record

from manyminds.aggregators import get_aggregator
from manyminds.pools import PoolQuestion, load_pool
from manyminds.reaggregate import reaggregate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pools"
POOLS = {
    "last-letters (GPT-3.5)": SHARED / "last_letters_gpt35_40.jsonl",
    "MedQA (GPT-4o-mini)": SHARED / "medqa_gpt4omini_40.jsonl",
    "arithmetic (SmolLM2-135M, logprobs)": RESULTS / "arithmetic_smollm2_40.jsonl",
}
GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40)
PERMUTATIONS = 5
RPC_PERMUTATIONS = 3


def shuffled(questions: list[PoolQuestion], seed: int) -> list[PoolQuestion]:
    out = []
    for k, q in enumerate(questions):
        order = list(q.candidates)
        random.Random(f"{seed}:{k}").shuffle(order)
        out.append(PoolQuestion(q.task, [c.model_copy(update={"index": i}) for i, c in enumerate(order)]))
    return out


def averaged(questions: list[PoolQuestion], permutations: int, **kwargs) -> tuple[float, float]:
    accs, samples = [], []
    for seed in range(permutations):
        r = reaggregate(shuffled(questions, seed), **kwargs)
        accs.append(r.accuracy)
        samples.append(r.mean_samples)
    return sum(accs) / len(accs), sum(samples) / len(samples)


def evaluate(name: str, questions: list[PoolQuestion]) -> dict:
    has_logprobs = all(c.generation and c.generation.logprobs for q in questions for c in q.candidates if c.answer)
    curves: dict[str, list[tuple[float, float]]] = {"majority": []}
    for n in GRID:
        curves["majority"].append(averaged(questions, PERMUTATIONS, aggregator="majority", cap=n)[::-1])
    points = {
        "ESC (window 5)": averaged(questions, PERMUTATIONS, aggregator="majority", stop="esc", cap=40)[::-1],
        "Adaptive-Consistency (0.95)": averaged(questions, PERMUTATIONS, aggregator="majority", stop="adaptive", cap=40)[::-1],
    }
    if has_logprobs:
        curves["weighted (mean token prob)"] = [
            averaged(questions, PERMUTATIONS, aggregator=get_aggregator("weighted", by="logprob"), cap=n)[::-1] for n in GRID
        ]
        curves["RPC"] = [averaged(questions, RPC_PERMUTATIONS, aggregator="rpc", cap=n)[::-1] for n in GRID]
    print(name, {k: v[-1] for k, v in curves.items()}, points, flush=True)
    return {"pool": name, "questions": len(questions), "grid": list(GRID), "curves": curves, "points": points}


def goals(result: dict) -> dict:
    full = dict(zip(result["grid"], result["curves"]["majority"]))[40][1]
    out = {"majority_at_40": round(full, 4)}
    for label, (samples, acc) in result["points"].items():
        out[label] = {"accuracy": round(acc, 4), "mean_samples": round(samples, 2),
                      "fewer_samples_x": round(40 / samples, 2), "points_below_n40": round(100 * (full - acc), 2)}
    if "RPC" in result["curves"]:
        enough = [n for n, (_, acc) in zip(result["grid"], result["curves"]["RPC"]) if acc >= full]
        out["RPC_samples_to_match_majority_at_40"] = enough[0] if enough else None
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    for ax, result in zip(axes, results):
        for label, curve in result["curves"].items():
            ax.plot([s for s, _ in curve], [100 * a for _, a in curve], marker="o", markersize=3, label=label)
        for label, (s, a) in result["points"].items():
            ax.scatter([s], [100 * a], marker="*", s=140, zorder=5, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("samples spent per question")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{result['pool']} ({result['questions']} questions)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    results, summary = [], {}
    for name, path in POOLS.items():
        if not path.is_file():
            print(f"skipping {name}: {path} missing (run benchmarks/record_pool.py)")
            continue
        result = evaluate(name, load_pool(path))
        results.append(result)
        summary[name] = goals(result)
    plot(results, RESULTS / "aggregators.png")
    lines = ["# Aggregators and stopping rules on recorded pools", ""]
    for result in results:
        lines += [f"## {result['pool']} ({result['questions']} questions)", "",
                  "| method | " + " | ".join(f"n={n}" for n in result["grid"]) + " |",
                  "|---|" + "---|" * len(result["grid"])]
        for label, curve in result["curves"].items():
            lines.append(f"| {label} | " + " | ".join(f"{100 * a:.1f}" for _, a in curve) + " |")
        lines += ["", "| stopping rule | accuracy | mean samples |", "|---|---|---|"]
        for label, (s, a) in result["points"].items():
            lines.append(f"| {label} | {100 * a:.1f} | {s:.2f} |")
        lines += ["", f"Goals: {summary[result['pool']]}", ""]
    (RESULTS / "aggregators.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written", record("aggregators", {"permutations": PERMUTATIONS, "summary": summary, "results": results}))


if __name__ == "__main__":
    main()
