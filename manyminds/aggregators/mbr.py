"""Minimum Bayes risk selection: the sample that agrees most, on average, with all the others.

How free-form answers vote (a chat reply, a summary, a program's text): no two are the same
string, but the one closest to the rest is the consensus. Each ballot's expected utility is its
mean utility against every other ballot; the highest wins (ties: lowest sample index), and
`Decision.chosen` names it, so `result.text` is that sample in full.

Utilities: `exact` (answer keys equal: MBR is then the majority vote), `chrf` (character n-gram
F-score, sacrebleu's chrF) and `rouge-l` (longest common subsequence F-measure, Google's
rouge-score), over each sample's full text (`over="text"`) or its answer key (`over="answer"`);
`judge`, a judge model's pairwise agreement, read from the verdicts of the `agreement` verifier
(`verifiers.agreement`: `best-of-n` with that verifier is MBR with this utility, and this
re-decides such a run offline).
Eikema and Aziz (2020) and Bertsch et al. (2023) on MBR decoding; Self-Consistency's free-form
extension (Jain et al., 2023) is MBR with a lexical utility.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import tally
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task

Utility = Callable[[str, str], float]


@functools.lru_cache(maxsize=1)
def _chrf() -> Callable[[str, str], float]:
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return lambda hypothesis, reference: metric.sentence_score(hypothesis, [reference]).score / 100


@functools.lru_cache(maxsize=1)
def _rouge_l() -> Callable[[str, str], float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return lambda hypothesis, reference: scorer.score(reference, hypothesis)["rougeL"].fmeasure


def utility(name: str) -> Utility:
    """The utility function of that name: `exact`, `chrf` or `rouge-l`, each in [0, 1]."""
    if name == "exact":
        return lambda a, b: float(a == b)
    if name == "chrf":
        return _chrf()
    return _rouge_l()


@aggregator("mbr")
class MBR(RecordsArguments):
    """The ballot with the highest mean utility against the other ballots."""

    name = "mbr"

    def __init__(self, utility: Literal["exact", "chrf", "rouge-l", "judge"] = "chrf",
                 over: Literal["text", "answer"] = "text") -> None:
        self.utility = utility
        self.over = over

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        ballots = sorted((c for c in candidates if c.votes), key=lambda c: c.index)
        votes = tally(candidates)
        if not ballots:
            return Decision(answer=None, confidence=0.0, tally=votes, aggregator=self.name, params=self.params())
        texts = [(c.text if self.over == "text" else c.answer) or "" for c in ballots]
        note = None
        judged = _judged_pairs(ballots) if self.utility == "judge" else None
        if len(ballots) == 1:
            expected = [1.0]
        elif judged is not None:
            expected = [sum(judged.get((a.index, b.index), 0.0) for b in ballots if b is not a) / (len(ballots) - 1)
                        for a in ballots]
        else:
            if self.utility == "judge":
                note = "no judged pairs (verify with the agreement verifier): chrF"
            score = utility("chrf" if self.utility == "judge" else self.utility)  # chrF is not symmetric:
            expected = [sum(score(texts[i], texts[j]) for j in range(len(texts)) if j != i) / (len(texts) - 1)
                        for i in range(len(texts))]  # each ballot is scored as the hypothesis
        best = max(range(len(ballots)), key=lambda i: (expected[i], -ballots[i].index))
        chosen = ballots[best]
        params = {**self.params(), "expected_utility": round(expected[best], 4), **({"note": note} if note else {})}
        return Decision(answer=chosen.answer, confidence=expected[best], tally=votes, aggregator=self.name,
                        params=params, chosen=chosen.index)


def _judged_pairs(ballots: Sequence[Candidate]) -> dict[tuple[int, int], float] | None:
    """The judge's agreement of each ordered pair of ballots, from the agreement verifier's verdicts
    (either candidate's verdict holds the pair); None when no ballot carries them."""
    found: dict[tuple[int, int], float] = {}
    for c in ballots:
        table = c.verdict.details.get("agreement") if c.verdict is not None else None
        if not isinstance(table, dict):
            continue
        for other, p in table.items():
            found[(c.index, int(other))] = float(p)
            found.setdefault((int(other), c.index), float(p))
    return found or None
