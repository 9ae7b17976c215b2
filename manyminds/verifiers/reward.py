"""A reward model behind an OpenAI-compatible scoring endpoint (vLLM's score API shape).

POSTs {"model", "text_1": question, "text_2": answer} to BASE_URL + path
and reads `data[0].score`; the raw score is scaled to [0, 1] linearly
between `low` and `high`, or by a sigmoid for logits. Failures go through
the one retry loop, like every remote backend.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from manyminds.backends.retry import parse_retry_after, with_retries
from manyminds.redact import public_url, redact, register, url_secrets
from manyminds.errors import BackendError
from manyminds.types import Candidate, Task, Verdict


class RewardEndpoint:
    name = "reward-model"

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        path: str = "/score",
        api_key: str | None = None,
        scale: Literal["linear", "sigmoid"] = "linear",
        low: float = 0.0,
        high: float = 1.0,
        threshold: float = 0.5,
        timeout: float = 60.0,
        retry_deadline: float = 120.0,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + path
        self._secrets = [api_key, *url_secrets(base_url)]
        register(*self._secrets)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.scale, self.low, self.high = scale, low, high
        self.threshold = threshold
        self.timeout = timeout
        self.retry_deadline = retry_deadline

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "url": public_url(self.url), "scale": self.scale, "threshold": self.threshold}

    def normalise(self, raw: float) -> float:
        if self.scale == "sigmoid":
            return 1 / (1 + math.exp(-raw))
        return min(1.0, max(0.0, (raw - self.low) / (self.high - self.low)))

    async def raw_score(self, question: str, answer: str) -> float:
        import httpx

        body = {"model": self.model, "text_1": question, "text_2": answer}

        async def attempt() -> float:
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    reply = await client.post(self.url, json=body, headers=self._headers)
            except httpx.HTTPError as error:
                raise BackendError(f"reward endpoint: {redact(str(error), self._secrets)}", retryable=True) from None
            if reply.status_code >= 400:
                retryable = reply.status_code in (408, 409, 429) or reply.status_code >= 500
                raise BackendError(f"reward endpoint: HTTP {reply.status_code}", retryable=retryable,
                                   retry_after=parse_retry_after(dict(reply.headers)))
            try:
                return float(reply.json()["data"][0]["score"])
            except (ValueError, KeyError, IndexError, TypeError):
                raise BackendError(f"reward endpoint: unexpected reply {redact(reply.text[:200], self._secrets)!r}",
                                   retryable=True) from None

        return await with_retries(attempt, deadline=self.retry_deadline)

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        raw = await self.raw_score(task.render(), candidate.text)
        score = self.normalise(raw)
        return Verdict(score=score, passed=score >= self.threshold, verifier=self.name, details={"raw": raw})
