"""The typed values that flow between the parts of manyminds.

Every arrow in the pipeline (task -> backend -> generations -> candidates ->
decision -> result) carries one of these pydantic models, never a loose dict,
so a stored result can be re-read, re-aggregated and compared offline.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

M = TypeVar("M", bound=BaseModel)


OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_SAMPLES = 1024
"""The most samples one question may be given (a strategy's n or budget). Published methods
use up to a few hundred; beyond this a typo such as `-n 100000` would spend a fortune."""

_DEFAULTS: dict[type, dict[str, Any]] = {}


def trusted(cls: "type[M]", **values: Any) -> "M":
    """An instance of model `cls` from values that are already valid, without validation.

    For the hot paths (cache reads, candidates, samples) where every value
    comes from validated models: pydantic's `model_construct` still walks
    every field (about 10 us an object); this sets the instance dict
    directly, filling unset fields with their defaults. Equal to the
    validated instance (tested).
    """
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {
            name: field.get_default(call_default_factory=True)
            for name, field in cls.model_fields.items()
            if not field.is_required()
        }
    obj = cls.__new__(cls)
    state = dict(defaults)
    state.update(values)
    object.__setattr__(obj, "__dict__", state)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class AnswerFormat(str, enum.Enum):
    """How a task's answer is extracted from a completion and compared."""

    NUMBER = "number"
    CHOICE = "choice"
    YES_NO = "yes-no"
    TEXT = "text"
    CODE = "code"
    MATH = "math"
    """Competition math (MATH, MATH-500): LaTeX answers; math-verify merges equivalent keys."""
    PLAN = "plan"
    """A Blocksworld plan, one action per line: plans with the same actions vote together."""
    JSON = "json"
    """A JSON value (structured output): values equal as data vote together, whatever their spacing
    or key order (the key is canonical JSON)."""
    TOOL = "tool"
    """A reply that may call a tool: calls with the same name and arguments (as data) vote together
    (key `call:` + canonical JSON); a plain reply's key is `text:` + its normalised text."""


def utf8_text(value: str, what: str) -> str:
    """`value`, if it can be written as UTF-8 (a byte that was not UTF-8 on a command line becomes a
    lone surrogate, which no cache, JSON file or HTTP body can hold)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = value[error.start:error.end].encode("utf-8", "surrogateescape")
        raise ValueError(f"{what} is not UTF-8 text (byte {bad!r} at character {error.start})") from None
    return value


class Message(BaseModel):
    """One chat message, as OpenAI-style chat APIs take it."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _content_utf8(cls, value: str) -> str:
        return utf8_text(value, "a message's content")


class Task(BaseModel):
    """A question to answer, with how to read its answer and (optionally) the gold one."""

    model_config = ConfigDict(frozen=True)

    question: str
    """The question as the user would ask it; must not be empty."""
    format: AnswerFormat = AnswerFormat.NUMBER
    """Which extractor reads answers from completions (number, choice, yes-no, text)."""
    choices: tuple[str, ...] | None = None
    """Option texts for multiple-choice tasks, labelled A, B, C... in order."""
    gold: str | None = None
    """The reference answer, when known; used for scoring, never shown to the model."""
    id: str | None = None
    """A stable identifier (data set id), kept in results and run records."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    history: tuple[Message, ...] = ()
    """Earlier turns of a conversation (user and assistant), before `question`, the last user turn.

    Prompts that ask the question in a message of its own send them as earlier turns; prompts
    that quote the question (selection, synthesis, judges) quote them as a transcript."""

    @field_validator("history")
    @classmethod
    def _history_turns(cls, value: tuple[Message, ...]) -> tuple[Message, ...]:
        for k, message in enumerate(value):
            if message.role == "system":
                raise ValueError(f"history[{k}] is a system message: give it as the strategy's system= instead")
            if not message.content.strip():
                raise ValueError(f"history[{k}] ({message.role}) has no text")
        return value

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("question is empty: give the text of the question to answer")
        return utf8_text(value, "the question")

    @field_validator("choices")
    @classmethod
    def _choices_lettered(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not 1 <= len(value) <= len(OPTION_LETTERS):
            raise ValueError(f"a task takes 1 to {len(OPTION_LETTERS)} options (lettered A-Z), not {len(value)}")
        return value

    def render(self) -> str:
        """The question as a model sees it: followed by lettered options for multiple choice, and
        after a transcript of the conversation so far when there is one."""
        question = self.question
        if self.choices:
            options = "\n".join(f"({OPTION_LETTERS[i]}) {text}" for i, text in enumerate(self.choices))
            question = f"{question}\n\nOptions:\n{options}"
        if not self.history:
            return question
        transcript = "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in self.history)
        return f"The conversation so far:\n\n{transcript}\n\nThe user's last message:\n\n{question}"

    def last_turn(self) -> "Task":
        """This task without its history: the last user turn alone, for prompts that send the
        history as turns of their own."""
        return self.model_copy(update={"history": ()}) if self.history else self

    @classmethod
    def of(cls, task: "Task | str") -> "Task":
        """Accept a plain string anywhere a task is expected."""
        return task if isinstance(task, Task) else cls(question=task)


class SamplingParams(BaseModel):
    """One validated set of sampling parameters; `n` is not one of them.

    The number of samples is an argument of `Backend.generate`, not a sampling
    parameter, so that the cache key of a request is the same whether 8 or 16
    samples of it are asked for.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy decoding (all samples are identical)."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    max_tokens: int = 512
    """Upper bound on completion tokens per sample."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion."""
    seed: int | None = None
    """Base seed; backends derive a distinct, reproducible seed per sample index from it."""
    logprobs: bool = False
    """Return the log-probability of every sampled token."""
    top_logprobs: int = 0
    """How many alternatives per token to return with logprobs (0 = none)."""
    top_k: int | None = None
    """Sample among the k most likely tokens only (vLLM, llama.cpp; not OpenAI's API). None: off."""
    min_p: float | None = None
    """Drop tokens less likely than min_p times the most likely one (vLLM, llama.cpp). None: off."""
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    """OpenAI's presence penalty, passed to engines that take it (OpenAI, vLLM, llama.cpp). None: off."""
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    """OpenAI's frequency penalty, passed as presence_penalty is. None: off."""

    stop_below_confidence: float | None = None
    """Stop a sample as soon as its group confidence (the mean token confidence, `TokenLogprob.
    confidence`, over its last `confidence_window` tokens) falls below this: DeepConf online (Fu et
    al. 2025). The sample ends with finish_reason "aborted", its tokens so far counted. Needs
    logprobs. A backend that decodes in process (the embedded model) stops decoding it; others
    generate it in full and it is cut where it would have stopped (`Capabilities.stops_samples`).
    None: off."""
    confidence_window: int | None = None
    """Tokens in the group of `stop_below_confidence` (None: 2,048, the paper's); no check before
    a sample has that many."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("top_k", "min_p", "presence_penalty", "frequency_penalty")
    """Engine extras, off unless set: passed to engines only when set, and left out of cache
    keys while unset, so the keys of requests made before they existed stay what they were."""
    CONTROLS: ClassVar[tuple[str, ...]] = ("stop_below_confidence", "confidence_window")
    """manyminds' own controls of decoding, never sent to an engine: in cache keys only when set,
    and never part of a sample's seed, so a sample stopped early is the prefix of the same sample
    drawn in full."""

    @property
    def stop_window(self) -> int:
        return self.confidence_window or 2048

    def extras(self) -> dict[str, Any]:
        """The optional engine parameters that are set (top_k, min_p, the penalties), by name."""
        return {name: getattr(self, name) for name in self.OPTIONAL if getattr(self, name) is not None}

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"top_k must be >= 1 (or None for off), got {value}")
        return value

    @model_validator(mode="after")
    def _stopping_reads_logprobs(self) -> "SamplingParams":
        if self.stop_below_confidence is not None and not self.logprobs:
            raise ValueError("stop_below_confidence reads token logprobs: set logprobs=True")
        if self.confidence_window is not None and self.confidence_window < 1:
            raise ValueError(f"confidence_window must be >= 1 token, got {self.confidence_window}")
        return self

    @field_validator("min_p")
    @classmethod
    def _min_p(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"min_p must be in [0, 1] (or None for off), got {value}")
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"temperature must be >= 0, got {value}")
        return value

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {value}")
        return value

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_tokens must be >= 1, got {value}")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, value: int) -> int:
        if not 0 <= value <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {value}")
        return value

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class TokenLogprob(BaseModel):
    """The log-probability of one sampled token (and, if asked, its alternatives)."""

    model_config = ConfigDict(frozen=True)

    token: str
    logprob: float
    top: dict[str, float] | None = None

    @property
    def confidence(self) -> float:
        """DeepConf's token confidence: -mean of the top-k alternatives' logprobs where they were
        returned (high when the model is sure: its alternatives are unlikely), else the sampled
        token's logprob (high when it was likely)."""
        if self.top:
            return -sum(self.top.values()) / len(self.top)
        return self.logprob


class Generation(BaseModel):
    """One sampled completion, as a backend (or the cache) returns it."""

    model_config = ConfigDict(frozen=True)

    text: str
    index: int
    """The sample index within its request: sample 7 is the same sample on every rerun."""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] | None = None
    request_id: str | None = None
    """Identifies the backend call that produced it: samples from one native-n call share it."""
    cached: bool = False
    """True when this sample was read from the cache rather than generated now."""

    @property
    def mean_token_probability(self) -> float | None:
        """exp(mean token logprob): the path's per-token probability, comparable across lengths
        (weighted votes, RPC, model consistency); None without logprobs."""
        if not self.logprobs:
            return None
        return math.exp(sum(t.logprob for t in self.logprobs) / len(self.logprobs))


class Verdict(BaseModel):
    """A verifier's judgement of one candidate."""

    model_config = ConfigDict(frozen=True)

    score: float
    """In [0, 1]: 1 surely right, 0 surely wrong (a probability, a pass rate, a scaled grade)."""
    passed: bool
    verifier: str
    details: dict[str, Any] = Field(default_factory=dict)
    """What the verifier saw: test output, judge replies, each panel member's verdict."""


SourceKind = str
"""'sample' (a ballot) or a registered evidence kind (`EVIDENCE_KINDS`, `evidence_kind`)."""
BUILT_IN_EVIDENCE = ("proposal", "selection", "synthesis", "ranking")
EVIDENCE_KINDS: dict[str, str] = {
    "proposal": "the model's proposed approaches or personas (DIV-SE)",
    "selection": "the model's choice among the samples (USC, Self-Agreement)",
    "synthesis": "one answer written from the samples (MoA, Self-MoA)",
    "ranking": "a judge's ranking of the samples (ranked vote)",
}
"""Every kind of evidence a strategy may record, with what it is; plugins add theirs (`evidence_kind`)."""
_SHORT_STAGES = ("first", "then")
"""Stages the short text form knows (a cascade's); a source with any other stage is stored as an object."""


def evidence_kind(name: str, description: str) -> str:
    """Declare a kind of evidence (a plugin strategy's `verification`, say): candidates of that
    kind are kept with the result, never vote, and are read by the aggregators that want them.
    Declaring a kind again with the same description is a no-op; a clash is an error."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name or "") or name == "sample" or re.fullmatch(r"layer-\d+", name):
        raise ValueError(f"an evidence kind is a lower-case word other than 'sample' and 'layer-N', got {name!r}")
    if EVIDENCE_KINDS.get(name, description) != description:
        raise ValueError(f"evidence kind {name!r} is declared already, as {EVIDENCE_KINDS[name]!r}")
    EVIDENCE_KINDS[name] = description
    return name


class Source(BaseModel):
    """Where a candidate came from: a value, so no module parses another's strings.

    `kind` says whether it votes: only "sample" candidates are ballots; the
    others are a strategy's evidence (the model's proposal, selection,
    synthesis or ranking), kept with the result so any aggregator can
    decide from them offline. `prompt` names the prompt or agent that
    produced it ("approach-2/persona-1", "proposer-3", "judge-1"); `layer`
    is the MoA layer or Self-MoA-Seq round; `stage` the cascade stage.
    Shown in its short form (`str(source)`, e.g. "then/layer-2/proposer-3");
    stored in it where it reads back unambiguously (built-in kinds, a
    cascade's stages), else as an object, so a plugin's kind never reads
    back as a ballot in a process that has not loaded the plugin.
    """

    model_config = ConfigDict(frozen=True)

    kind: SourceKind = "sample"
    prompt: str = ""
    layer: int | None = None
    stage: str | None = None

    @property
    def votes(self) -> bool:
        return self.kind == "sample"

    @property
    def agent(self) -> str:
        """The producing agent regardless of layer and stage: MoA's proposer, DIV-SE's prompt."""
        return self.prompt or self.kind

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # compares with its short form: source == "layer-2/proposer-3"
            return str(self) == other
        if isinstance(other, Source):
            return (self.kind, self.prompt, self.layer, self.stage) == (other.kind, other.prompt, other.layer, other.stage)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def within(self, stage: str) -> "Source":
        return self.model_copy(update={"stage": stage})

    def __str__(self) -> str:
        parts = [self.stage] if self.stage else []
        if self.layer is not None:
            parts.append(f"layer-{self.layer}")
        if self.kind != "sample":
            parts.append(self.kind)
        if self.prompt:
            parts.append(self.prompt)
        return "/".join(parts) or "sample"

    @classmethod
    def parse(cls, text: str) -> "Source":
        """The inverse of `str`: "synthesis", "layer-2/proposer-3", "first/approach-1/persona-2"."""
        return _parse_source(text)

    @classmethod
    def _parse(cls, text: str) -> "Source":
        parts = [p for p in text.split("/") if p]
        stage = parts.pop(0) if parts and parts[0] in _SHORT_STAGES else None
        layer = None
        if parts and re.fullmatch(r"layer-\d+", parts[0]):
            layer = int(parts.pop(0)[6:])
        kind = "sample"
        if parts and parts[0] in BUILT_IN_EVIDENCE:
            kind = parts.pop(0)
        elif parts == ["sample"]:
            parts = []
        return cls(kind=kind, prompt="/".join(parts), layer=layer, stage=stage)

    @model_validator(mode="wrap")
    @classmethod
    def _from_text(cls, value: Any, handler: Any) -> "Source":
        return cls.parse(value) if isinstance(value, str) else handler(value)

    @model_serializer(mode="plain")
    def _as_text(self) -> "str | dict[str, Any]":
        if self.kind in ("sample", *BUILT_IN_EVIDENCE) and self.stage in (None, *_SHORT_STAGES) and (
                not self.prompt or self.prompt.split("/")[0] not in (*BUILT_IN_EVIDENCE, *_SHORT_STAGES, "sample")):
            return str(self)
        return {"kind": self.kind, "prompt": self.prompt, "layer": self.layer, "stage": self.stage}


SAMPLE = Source()


@functools.lru_cache(maxsize=4096)
def _parse_source(text: str) -> Source:
    # Sources are frozen values: one per distinct text serves every candidate (a hot path of reruns).
    return Source._parse(text)


class Candidate(BaseModel):
    """A generation read as an answer to a task.

    A candidate whose answer could not be extracted has `answer=None`: it is
    kept (the text is evidence) but casts no vote.
    """

    model_config = ConfigDict(frozen=True)

    index: int
    text: str
    answer: str | None
    """The normalised answer key: equivalent answers share one key and vote together."""
    generation: Generation | None = None
    source: Source = SAMPLE
    """Which prompt or step produced it, and whether it votes (`Source.kind`)."""
    verdict: Verdict | None = None
    """The verifier's judgement, when a verifying strategy ran one."""

    @property
    def votes(self) -> bool:
        """A ballot with a readable answer: evidence (syntheses, selections) never votes."""
        return self.answer is not None and self.source.kind == "sample"


def ballots(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates that are samples (voting or abstaining), without a strategy's evidence."""
    return [c for c in candidates if c.source.kind == "sample"]


def response_text(candidates: Sequence[Candidate], decision: "Decision") -> str | None:
    """The text a decision stands for: its chosen candidate's, else the earliest ballot with its answer."""
    if decision.chosen is not None:
        for c in candidates:
            if c.index == decision.chosen:
                return c.text
    if decision.answer is None:
        return None
    giving = [c for c in candidates if c.answer == decision.answer and c.source.kind == "sample"]
    return min(giving, key=lambda c: c.index).text if giving else None


def evidence(candidates: Sequence[Candidate], kind: str) -> list[Candidate]:
    """A strategy's evidence of `kind` ("synthesis", "selection", "ranking"), in index order."""
    return sorted((c for c in candidates if c.source.kind == kind), key=lambda c: c.index)


class Usage(BaseModel):
    """What a result cost: backend calls made now, samples served from the cache, tokens."""

    calls: int = 0
    """Backend calls actually made for this result (cache hits make none)."""
    samples: int = 0
    """Samples used, fresh and cached."""
    cached_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens of every sample used, fresh or cached: what the answer costs to produce."""
    speculative_samples: int = 0
    """Samples a stopping rule drew ahead in batched waves and did not use (kept in the cache)."""
    speculative_tokens: int = 0
    """Completion tokens of those samples."""
    withheld_samples: int = 0
    """Samples and model calls a budget did not let start (`manyminds.budget`)."""
    cached_prompt_tokens: int = 0
    """Of `prompt_tokens`, those of calls served wholly from the cache (no upstream call made now)."""
    cached_completion_tokens: int = 0
    """Of `completion_tokens`, those of samples served from the cache: not generated for this result."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            calls=self.calls + other.calls,
            samples=self.samples + other.samples,
            cached_samples=self.cached_samples + other.cached_samples,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            speculative_samples=self.speculative_samples + other.speculative_samples,
            speculative_tokens=self.speculative_tokens + other.speculative_tokens,
            withheld_samples=self.withheld_samples + other.withheld_samples,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            cached_completion_tokens=self.cached_completion_tokens + other.cached_completion_tokens,
        )

    @classmethod
    def of(
        cls, generations: "list[Generation] | tuple[Generation, ...]", spare: "Sequence[Generation]" = (),
        withheld: int = 0,
    ) -> "Usage":
        """Count calls by distinct request id; prompt tokens once per call, as APIs bill them.

        `spare`: samples drawn ahead and not used; their calls count, their samples apart.
        `withheld`: samples a budget did not let start."""
        fresh_requests: set[str] = set()
        prompt_tokens_by_request: dict[str, int] = {}
        completion = 0
        cached = 0
        anonymous_calls = 0
        cached_completion = 0
        fresh_keys: set[str] = set()
        for g in generations:
            completion += g.completion_tokens
            key = g.request_id or f"anonymous:{g.index}"
            prompt_tokens_by_request.setdefault(key, g.prompt_tokens)
            if not g.cached:
                fresh_keys.add(key)
            if g.cached:
                cached += 1
                cached_completion += g.completion_tokens
            elif g.request_id is None:
                anonymous_calls += 1
            else:
                fresh_requests.add(g.request_id)
        for g in spare:
            if not g.cached:
                if g.request_id is None:
                    anonymous_calls += 1
                else:
                    fresh_requests.add(g.request_id)
        return cls(
            calls=len(fresh_requests) + anonymous_calls,
            samples=len(generations),
            cached_samples=cached,
            prompt_tokens=sum(prompt_tokens_by_request.values()),
            completion_tokens=completion,
            speculative_samples=len(spare),
            speculative_tokens=sum(g.completion_tokens for g in spare),
            withheld_samples=withheld,
            cached_prompt_tokens=sum(t for k, t in prompt_tokens_by_request.items() if k not in fresh_keys),
            cached_completion_tokens=cached_completion,
        )


class Decision(BaseModel):
    """An aggregator's verdict over a set of candidates."""

    answer: str | None
    """The chosen answer key, or None when no candidate voted (abstention)."""
    confidence: float = 0.0
    """The winner's share of the votes (0 when nothing voted)."""
    tally: dict[str, float] = Field(default_factory=dict)
    """Votes (or weights) per answer key, in the order of first appearance."""
    aggregator: str = ""
    """The name of the aggregator that decided, e.g. "majority"."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The aggregator's parameters, so a run says exactly how its answer was chosen."""
    chosen: int | None = None
    """The index of the candidate whose text is the answer (a selected response, a synthesis);
    None: the earliest ballot giving the answer."""


class Result(BaseModel):
    """The outcome for one task: the answer, how sure, why, and at what cost."""

    task: Task
    answer: str | None
    confidence: float
    tally: dict[str, float]
    candidates: list[Candidate]
    usage: Usage
    decision: Decision
    strategy: str
    """The strategy's name, e.g. "self-consistency"."""
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    trace: list[str] = Field(default_factory=list)
    """The steps taken, in order (graph nodes, escalations), for inspection."""
    stop_reason: str | None = None
    """Why sampling stopped, when a stopping rule was used (early-stopping votes)."""
    text: str | None = None
    """The full text of the response that is the answer (the chosen ballot, the synthesis): what
    a free-form task's user reads, where `answer` is only its normalised key."""

    @model_validator(mode="after")
    def _sorted_candidates(self) -> "Result":
        # Parallel updates arrive in arbitrary order; results always list candidates by index.
        self.candidates.sort(key=lambda c: c.index)
        return self
