"""Self-consistency over several temperatures: the n samples split across them, all voting.

An example of a method in one file. Each temperature is one request with its
own parameters; `temperature=` is refused, so a setting is never ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from manyminds.strategies.base import OnePromptStrategy, Voting
from manyminds.extensions import Request, View


class TemperatureMix(OnePromptStrategy, Voting):
    """n samples shared out over `temperatures` (the first ones get the remainder); one vote."""

    name: ClassVar[str] = "temperature-mix"

    temperatures: tuple[float, ...] = Field(default=(0.3, 0.7, 1.0), min_length=1, description="sampled at each")

    @model_validator(mode="after")
    def _settings_used(self) -> "TemperatureMix":
        if "temperature" in self.sampling.model_fields_set or self.stop is not None:
            raise ValueError("temperature-mix samples at `temperatures` in one wave: it takes no temperature= or stop=")
        return self

    def build(self, backend: Any) -> Any:
        k = len(self.temperatures)
        shares = [self.n // k + (j < self.n % k) for j in range(k)]

        def plan(v: View) -> list[Request]:
            return [Request(f"t={t:g}", self.messages(v.task), c, params=self.sampling_params(temperature=t))
                    for t, c in zip(self.temperatures, shares) if c]

        return self.pipeline(backend).sample(plan, self.sampling_params()).aggregate()
