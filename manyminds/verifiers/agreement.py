"""Pairwise agreement by a judge: minimum Bayes risk with an LLM-judged utility.

For free text, chrF and ROUGE-L count shared characters and words; two replies that say the same
thing in other words score low. Here a judge model is asked, for each pair of the question's
samples, whether the two replies agree (same final answer, or the same substance for free text),
and a sample's score is its mean agreement with the others: its expected utility in MBR terms. So
`best-of-n` with this verifier is MBR with an LLM-judged utility (the sample that agrees most with
the rest wins), and the `mbr` aggregator's `utility="judge"` reads the same pairwise judgements
back from the verdicts. A pair is judged once per order the judge is asked in (`both_orders`
averages the two, cancelling a judge's lean towards the first or the second reply), once per run
(shared between the pair's two candidates), and cached by the backend's cache across runs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.text import clip
from manyminds.types import Candidate, Message, SamplingParams, Task, Verdict
from manyminds.verifiers.base import VerifierOptions, verifier
from manyminds.verifiers.judge import read_true_false

AGREEMENT_PROMPT = (
    "Question: {question}\n\nReply 1:\n{first}\n\nReply 2:\n{second}\n\n"
    "Do the two replies agree: the same final answer, or for an open question the same substance? "
    "Reply with one word: True or False."
)


class PairwiseAgreement:
    """Each sample's mean judged agreement with the question's other samples (MBR, judge utility).

    Args:
        backend: the judge (wrap it with a cache: pairs are then free on reruns).
        both_orders: ask each pair in both orders and average (position bias cancels).
        threshold: mean agreement at or above which a sample passes.
        max_chars: each reply is clipped to this many characters in the prompt.
    """

    name = "agreement"
    sees_other_samples = True

    def __init__(self, backend: Backend, *, both_orders: bool = True, threshold: float = 0.5,
                 max_chars: int | None = 2000, prompt: str | None = None) -> None:
        if not 0 <= threshold <= 1:
            raise ConfigError(f"agreement: threshold must be in [0, 1], got {threshold}")
        self.backend = backend
        self.both_orders = both_orders
        self.threshold = threshold
        self.max_chars = max_chars
        self.prompt = prompt or AGREEMENT_PROMPT
        self._pending: dict[tuple[str, str, str], asyncio.Future[float | None]] = {}
        self._done: dict[tuple[str, str, str], float | None] = {}

    def params(self) -> dict[str, Any]:
        return {"judge": self.backend.cache_identity(), "both_orders": self.both_orders, "threshold": self.threshold}

    def _shown(self, text: str) -> str:
        text = text.strip()
        return clip(text, self.max_chars) if self.max_chars else text

    async def _ask(self, task: Task, first: str, second: str) -> float | None:
        """P(the judge says the replies agree), from the first token's logprobs, else its word."""
        from manyminds.verifiers.judge import p_true_from_logprobs

        content = self.prompt.format(question=task.render(), first=self._shown(first), second=self._shown(second))
        logprobs = self.backend.capabilities.logprobs
        (reply,) = await self.backend.generate(
            [Message(role="user", content=content)],
            SamplingParams(temperature=0, max_tokens=3, logprobs=logprobs, top_logprobs=10 if logprobs else 0), 1)
        p = p_true_from_logprobs(reply) if logprobs else None
        if p is None:
            said = read_true_false(reply.text)
            p = None if said is None else float(said)
        return p

    async def _judged(self, task: Task, first: str, second: str) -> float | None:
        """One order of one pair, asked once per verifier however many candidates need it (a pair
        in flight is awaited by both its candidates; a judged one is remembered)."""
        key = (task.question, first, second)
        if key in self._done:
            return self._done[key]
        future = self._pending.get(key)
        if future is None or future.get_loop() is not asyncio.get_running_loop():
            future = asyncio.ensure_future(self._ask(task, first, second))
            self._pending[key] = future
            future.add_done_callback(lambda f: self._settle(key, f))
        return await future

    def _settle(self, key: tuple[str, str, str], future: "asyncio.Future[float | None]") -> None:
        if self._pending.get(key) is future:
            del self._pending[key]
        if not future.cancelled() and future.exception() is None:
            self._done[key] = future.result()
            if len(self._done) > 50_000:  # bounded: the backend's cache keeps them for good
                self._done.pop(next(iter(self._done)))

    async def agreement(self, task: Task, a: Candidate, b: Candidate) -> float | None:
        """The pair's judged agreement (in [0, 1]; None when the judge's reply could not be read)."""
        first, second = (a, b) if a.index < b.index else (b, a)
        orders = [(first.text, second.text)] + ([(second.text, first.text)] if self.both_orders else [])
        found = [p for p in await asyncio.gather(*(self._judged(task, x, y) for x, y in orders)) if p is not None]
        return sum(found) / len(found) if found else None

    async def verify(self, task: Task, candidate: Candidate, others: Sequence[Candidate] = ()) -> Verdict:
        peers = [c for c in others if c.votes and c.index != candidate.index]
        if not peers:
            return Verdict(score=1.0, passed=True, verifier=self.name, details={"agreement": {}, "note": "alone"})
        judged = await asyncio.gather(*(self.agreement(task, candidate, c) for c in peers))
        agreement = {str(c.index): round(p, 6) for c, p in zip(peers, judged) if p is not None}
        score = sum(agreement.values()) / len(agreement) if agreement else 0.0
        if math.isnan(score):
            score = 0.0
        return Verdict(score=score, passed=score >= self.threshold, verifier=self.name,
                       details={"agreement": agreement, "unread": len(peers) - len(agreement)})


@verifier("agreement")
def _agreement(options: VerifierOptions, both_orders: bool = True, threshold: float = 0.5) -> PairwiseAgreement:
    if options.backend is None:
        raise ConfigError("the agreement verifier is a judge: it needs a backend")
    return PairwiseAgreement(options.backend, both_orders=both_orders, threshold=threshold)
