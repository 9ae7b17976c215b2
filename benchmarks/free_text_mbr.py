"""MBR on free text: the sample closest to the others (chrF) against the first sample, judged pairwise.

AlpacaEval instructions, asked as written (`prompt="raw"`), n samples each from the embedded model
(drawn once, cached). MBR (`mbr`, chrF over the full text) picks one; a judge compares it with
the first sample in both orders (its lean towards a position cancels): a win in both orders is 1,
in one 0.5, none 0. Where MBR picks the first sample itself the comparison is a tie (0.5), not
asked. The judge is the same embedded model (135M parameters: a weak judge; pass `--judge SPEC`
for a stronger one). The mean preference for MBR's pick is reported with a 95% bootstrap interval
over instructions: above 0.5 means MBR's pick is preferred.

    .venv/bin/python benchmarks/free_text_mbr.py [--tasks 40] [--n 8] [--judge local]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, record

from manyminds import datasets
from manyminds.aggregators import get_aggregator
from manyminds.backends import from_spec
from manyminds.bench.scoring import PAIRWISE_PROMPT, read_preference
from manyminds.cache import GenerationCache
from manyminds.session import Session
from manyminds.strategies import make
from manyminds.text import clip
from manyminds.types import Message, SamplingParams

CACHE = Path.home() / ".cache" / "manyminds" / "bench-free-text-mbr.sqlite"


async def prefers_first(judge, instruction: str, first: str, second: str) -> bool | None:
    prompt = PAIRWISE_PROMPT.format(instruction=instruction, a=clip(first, 4000), b=clip(second, 4000))
    (reply,) = await judge.generate([Message(role="user", content=prompt)], SamplingParams(temperature=0, max_tokens=8), 1)
    verdict = read_preference(reply.text)
    return None if verdict is None else verdict == "A"


async def preference(judge, instruction: str, ours: str, theirs: str) -> tuple[float, int]:
    """1 / 0.5 / 0 for ours over theirs across both orders; and how many replies were unreadable."""
    a, b = await asyncio.gather(prefers_first(judge, instruction, ours, theirs),
                                prefers_first(judge, instruction, theirs, ours))
    wins = (a is True) + (b is False)
    losses = (a is False) + (b is True)
    unread = (a is None) + (b is None)
    return (0.5 + 0.25 * (wins - losses)), unread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--judge", default="local")
    args = parser.parse_args()
    tasks = datasets.load("alpaca_eval", limit=args.tasks)
    strategy = make("self-consistency", args.n, prompt="raw", temperature=0.7, max_tokens=256, seed=0,
                    aggregator="mbr")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with Session(from_spec("local"), cache=CACHE, progress=False) as session:
        results = session.solve_many(strategy, tasks)
    generation_s = time.perf_counter() - start
    mbr = get_aggregator("mbr")
    chosen = [mbr(r.task, r.candidates).chosen for r in results]
    first_index = [min(c.index for c in r.candidates if c.source.kind == "sample") for r in results]

    async def judged() -> list[tuple[float, int]]:
        with GenerationCache(CACHE) as cache:
            judge = cache.wrap(from_spec(args.judge))
            out = []
            for r, pick, first in zip(results, chosen, first_index):
                by_index = {c.index: c for c in r.candidates}
                if pick == first:
                    out.append((0.5, 0))
                    continue
                out.append(await preference(judge, r.task.question, by_index[pick].text, by_index[first].text))
            return out

    start = time.perf_counter()
    scores = asyncio.run(judged())
    judging_s = time.perf_counter() - start
    values = np.array([s for s, _ in scores])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), size=(5000, len(values)))].mean(axis=1)
    low, high = float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
    same = sum(1 for p, f in zip(chosen, first_index) if p == f)
    unread = sum(u for _, u in scores)
    lengths = [(len(next(c.text for c in r.candidates if c.index == p)), len(next(c.text for c in r.candidates
                if c.index == f))) for r, p, f in zip(results, chosen, first_index)]
    data = {"tasks": len(tasks), "n": args.n, "judge": args.judge, "preference_for_mbr": float(values.mean()),
            "interval": [low, high], "mbr_picked_the_first": same, "unreadable_judge_replies": unread,
            "mean_chars_mbr": float(np.mean([a for a, _ in lengths])),
            "mean_chars_first": float(np.mean([b for _, b in lengths])),
            "generation_s": round(generation_s, 1), "judging_s": round(judging_s, 1)}
    record("free_text_mbr", data)
    lines = [f"# MBR (chrF) on free text against the first sample ({len(tasks)} AlpacaEval instructions, "
             f"n = {args.n}, SmolLM2-135M)", "", "Command: `.venv/bin/python benchmarks/free_text_mbr.py`", "",
             f"Judge: `{args.judge}`, pairwise in both orders. Preference for MBR's pick: **{values.mean():.3f}** "
             f"[95% CI {low:.3f}, {high:.3f}] (0.5 = no preference); MBR picked the first sample itself on {same} "
             f"instructions (ties); {unread} of {2 * (len(tasks) - same)} judge replies unreadable (no win "
             f"either way). Mean length: MBR's pick {data['mean_chars_mbr']:.0f} characters, the first sample "
             f"{data['mean_chars_first']:.0f}.",
             "", f"Generation {generation_s:.0f} s (cached on rerun), judging {judging_s:.0f} s."]
    (RESULTS / "free_text_mbr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
