"""The one way to assemble a strategy: a pipeline of steps over the ensemble state.

Every built-in strategy is a few calls on a `Pipeline`::

    p = Pipeline(strategy, backend)
    p.sample(plan, params)                    # which prompts, how many, which backend
    p.repeat(lambda p: p.sample(wave), until=rule_says_stop, cap=n, name="waves")
    p.verify(verifier)
    p.ask("synthesis", build, params)         # a model call whose reply is evidence
    graph = p.aggregate()                     # every decision is a registered aggregator

What a strategy varies is the *plan*: a function from a task's `View` (its
samples, candidates, verdicts and the loop's round) to the requests to make.
A sampling step may add to the voting samples or replace them (refinement,
MoA layers). A loop repeats its body a number of times or until a condition
settles each task (a stopping rule, a verifier passing); settled tasks are
not sampled again. Model calls that decide (selection, synthesis, ranking)
leave their reply as evidence among the candidates, and the aggregator reads
it, so `reaggregate` can replay any decision offline. Extraction follows
every sampling step; math answers equal in value get one key, unified in
math-verify's process pool without blocking the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union, overload

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from manyminds._perf import gc_paused
from manyminds.agents.nodes import (
    DIRECT, RunContext, advance, allowance, async_node, inline_node, per_task, prepare, run_sync, text_sink,
)
from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState, Sample, SlotSamples
from manyminds.answers import FORMATS, extract
from manyminds.backends.base import Backend, cut_where_stopped, streamed
from manyminds.budget import Allowance, Budget
from manyminds.errors import ConfigError
from manyminds.extensions import Request, Settled, View
from manyminds.types import (
    EVIDENCE_KINDS,
    Candidate, Decision, Generation, Message, Result, SamplingParams, Source, Task, Usage, Verdict, response_text,
    trusted,
)
from manyminds.verifiers.base import check
from manyminds.answers.equivalence import aunify_keys

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from manyminds.aggregators import Aggregator
    from manyminds.strategies.base import Strategy

S = TypeVar("S", bound=EnsembleState)
T = TypeVar("T")


Plan = Callable[[View], Sequence[Request]]
Build = Callable[[View], "list[Message] | None"]
Until = Callable[[View], "Settled | None"]
Split = Callable[[Task, Sample], list[tuple[Source, str]]]
Read = Callable[[Task, Sample], "str | None"]
Update = Callable[[EnsembleState], dict[str, Any]]


@dataclass
class _Step:
    name: str
    node: Any
    fan_out: Callable[[EnsembleState], list[Send]] | None = None
    """A fanned-out step is reached through this router: one `Send` per slot, met by the next step."""


@dataclass
class _Loop:
    name: str
    body: list["_Item"]
    times: int | None
    until: Until | None


_Item = Union[_Step, _Loop]


@dataclass
class _Sampling:
    """What a sampling step does with what it draws (shared by the plain and the fanned-out form)."""

    name: str
    replace: bool
    split: Split | None
    loop: str | None
    read: Read | None = None
    settles: bool = False
    """Inside a loop with a stopping condition: settled tasks are skipped, and a task whose
    plan asks for nothing is settled (so the loop always ends)."""
    finishes: bool = False
    """The pipeline's last sampling step outside a loop: a task is finished when it is."""


class Pipeline(Generic[S]):
    """Steps run one after another over the batch; `aggregate` compiles them into a graph."""

    @overload
    def __init__(self: "Pipeline[EnsembleState]", strategy: "Strategy", backend: Backend) -> None: ...

    @overload
    def __init__(self, strategy: "Strategy", backend: Backend, *, state: type[S]) -> None: ...

    def __init__(self, strategy: "Strategy", backend: Backend, *, state: Any = EnsembleState) -> None:
        self.strategy = strategy
        self.backend = backend
        self.state = state
        self._items: list[_Item] = []
        self._stack: list[list[_Item]] = [self._items]
        self._loops: list[_Loop] = []
        self._samplings: list[_Sampling] = []
        self._names: set[str] = set()
        self._last_ask: tuple[_Step, str, dict[str, bool]] | None = None

    @property
    def budget(self) -> "Budget | None":
        """The strategy's per-question budget (`manyminds.budget`), honoured by every model call."""
        return getattr(self.strategy, "budget", None)

    # -- steps ---------------------------------------------------------------------

    def sample(
        self,
        plan: Plan | Callable[[View], Sequence[Request]],
        params: SamplingParams,
        *,
        name: str = "sample",
        backend: Backend | None = None,
        replace: bool = False,
        split: Split | None = None,
        read: Read | None = None,
        slots: int | None = None,
        backends: Sequence[Backend] | None = None,
    ) -> "Pipeline":
        """Make each unsettled task's planned requests; read answers out of what comes back.

        `replace` makes the new samples the voting ones (the old move to `aux`,
        still counted); otherwise they are added. `split` reads several answers
        from one sample (IDIV-SE); `read` reads a sample's answer key in place of
        `answers.extract` (choice shuffling maps a permuted letter back). With `slots`, the step fans out with `Send`,
        one slot per prompt or proposer over the whole batch, the plan seeing
        `View.slot`; `backends` gives each slot its own backend.
        """
        name = self._unique(name)
        loop = self._loops[-1] if self._loops else None
        sampling = _Sampling(name, replace, split, loop.name if loop else None, read=read,
                             settles=loop is not None and loop.until is not None)
        self._samplings.append(sampling)
        main = backend or self.backend
        if slots is None:
            self._add(_Step(name, async_node(self._sample_node(main, plan, params, sampling), name)))
            return self
        if backends is not None and len(backends) != slots:
            raise ConfigError(f"step {name!r}: {len(backends)} backends for {slots} slots")
        join = self._unique(f"{name}-join")

        def route(state: Any) -> list[Send]:
            return [Send(name, {**state, "slot": j}) for j in range(slots)]

        slot_backend: Callable[[int], Backend] = (lambda j: backends[j]) if backends else (lambda j: main)
        self._add(_Step(name, async_node(self._slot_node(slot_backend, plan, params, sampling, slots), name),
                        fan_out=route))
        self._add(_Step(join, async_node(self._join_node(sampling), join)))
        return self

    def verify(self, verifier: Any, *, name: str = "verify", max_parallel: int = 16) -> "Pipeline":
        """Verify every ballot not verified yet, concurrently; the verdict joins the candidate."""
        name = self._unique(name)

        async def verify(state: EnsembleState) -> dict[str, Any]:
            limit = asyncio.Semaphore(max_parallel)

            async def judged(task: Task, candidate: Candidate, others: list[Candidate]) -> Candidate:
                async with limit:  # the other samples reach the judges that read them (P(True) with context)
                    verdict: Verdict = await check(verifier, task, candidate, others)
                return candidate.model_copy(update={"verdict": verdict})

            async def work(i: int, task: Task) -> list[Candidate]:
                cands = state["candidates"][i]
                todo = [k for k, c in enumerate(cands) if c.source.kind == "sample" and c.verdict is None]
                if not todo:
                    return cands
                shown = [c for c in cands if c.source.kind == "sample"]
                checked = await asyncio.gather(*(judged(task, cands[k], shown) for k in todo))
                out = list(cands)
                for k, c in zip(todo, checked):
                    out[k] = c
                return out

            candidates = await per_task(state, work)
            traces = []
            for t, cands in zip(state["traces"], candidates):
                verdicts = [c.verdict for c in cands if c.verdict is not None]
                traces.append(t + [f"{name}: {sum(v.passed for v in verdicts)}/{len(verdicts)} passed"])
            return {"candidates": candidates, "traces": traces}

        self._add(_Step(name, async_node(verify, name)))
        return self

    def ask(
        self,
        kind: str,
        build: Build,
        params: SamplingParams,
        *,
        name: str | None = None,
        backend: Backend | None = None,
        prompt: str = "",
        read_answer: bool | None = None,
    ) -> "Pipeline":
        """One model call per task (None from `build` skips it); the reply is evidence of `kind`.

        The reply joins the candidates with `Source(kind=kind)` (never a
        ballot) and counts in usage. `read_answer` (default: for syntheses)
        reads an answer key out of it.
        """
        if kind not in EVIDENCE_KINDS:
            raise ConfigError(f"evidence kind {kind!r} is not declared: declare it with "
                              f"manyminds.extensions.evidence_kind({kind!r}, '<what it is>') (declared: "
                              f"{', '.join(sorted(EVIDENCE_KINDS))})")
        name = self._unique(name or kind)
        asker = backend or self.backend
        read = kind == "synthesis" if read_answer is None else read_answer
        loop = self._loops[-1].name if self._loops else None

        own = self.budget
        streams = {"last": False}  # set by `aggregate` when this is a synthesis and the last step

        async def ask(state: EnsembleState) -> dict[str, Any]:
            r = state["rounds"].get(loop, 0) if loop else 0
            skipped: dict[int, tuple[int, str | None]] = {}
            sink = text_sink() if streams["last"] and len(state["batch"]) == 1 else None

            async def work(i: int, task: Task) -> Generation | None:
                messages = build(View(i, task, state, round=r))
                if messages is None:
                    return None
                left = allowance(state, i, own)
                if left is not None and not left.admit(1, params.max_tokens):
                    left.withhold(1)  # the decider falls back to its vote, as for an unreadable reply
                    skipped[i] = (1, left.stop_reason())
                    return None
                try:
                    if sink is not None:  # one question's answer-making call: its text as it comes
                        reply = await streamed(asker, messages, params, sink)
                    else:
                        (reply,) = await asker.generate(messages, params, 1)
                except BaseException:
                    if left is not None:
                        left.charge(1, params.max_tokens, [])  # the run's reservation is given back
                    raise
                if left is not None:
                    left.charge(1, params.max_tokens, [reply])
                return reply

            replies = await per_task(state, work)
            source = Source(kind=kind, prompt=prompt, layer=r + 1 if loop else None)
            candidates, issued, aux, traces = [], [], [], []
            for i, (task, reply) in enumerate(zip(state["batch"], replies)):
                cands, k = state["candidates"][i], state["issued"][i]
                if reply is not None:
                    answer = extract(task, reply.text) if read else None
                    cands = cands + [trusted(Candidate, index=k, text=reply.text, answer=answer, generation=reply,
                                             source=source)]
                    k += 1
                candidates.append(cands)
                issued.append(k)
                aux.append(state["aux"][i] + ([reply] if reply is not None else []))
                traces.append(state["traces"][i] + [name if i not in skipped else f"{name}: not asked"])
            update: dict[str, Any] = {"candidates": candidates, "issued": issued, "aux": aux, "traces": traces}
            if skipped:
                _budget_stops(state, update, list(state["stop_reasons"]), skipped)
            return update

        step = _Step(name, async_node(ask, name))
        self._add(step)
        self._last_ask = (step, kind, streams)
        return self

    def update(self, func: Callable[[S], dict[str, Any]], name: str) -> "Pipeline[S]":
        """A quick step of the strategy's own: `func(state)` returns the update (e.g. parse a proposal)."""
        name = self._unique(name)
        self._add(_Step(name, inline_node(func, name)))
        return self

    def step(self, func: "Callable[[S], Coroutine[Any, Any, dict[str, Any]]]", name: str) -> "Pipeline[S]":
        """An async step of the strategy's own (a cascade running other graphs)."""
        name = self._unique(name)
        self._add(_Step(name, async_node(func, name)))
        return self

    def repeat(
        self,
        body: Callable[["Pipeline"], Any],
        *,
        times: int | None = None,
        until: Until | None = None,
        name: str = "rounds",
    ) -> "Pipeline":
        """Run the steps `body` adds, again and again: `times` rounds, or until `until` settles every task.

        `until(view)` is asked after each round for every task not yet
        settled; a `Settled` stops sampling that task (its reason becomes the
        result's stop reason; `keep` trims samples drawn ahead). With
        `times`, tasks still unsettled after the last round stop there.
        """
        if times is None and until is None:
            raise ConfigError(f"loop {name!r} needs times=, until= or both, or it would never end")
        if times is not None and times < 1:
            raise ConfigError(f"loop {name!r}: times must be >= 1, got {times}")
        name = self._unique(name)
        loop = _Loop(name, [], times, until)
        self._add(loop)
        self._stack.append(loop.body)
        self._loops.append(loop)
        try:
            body(self)
        finally:
            self._stack.pop()
            self._loops.pop()
        if not loop.body:
            raise ConfigError(f"loop {name!r} has no steps")
        return self

    def aggregate(self, aggregator: "Aggregator | Any" = None, *, record: dict[str, Any] | None = None) -> "CompiledStateGraph[Any, Any, Any, Any]":
        """Decide every task with `aggregator` (an Aggregator or a spec; default the strategy's
        `aggregation()`), assemble the Results, and compile the graph."""
        from manyminds.aggregators import resolve

        if self._last_ask is not None and self._items and self._items[-1] is self._last_ask[0] \
                and self._last_ask[1] == "synthesis":
            self._last_ask[2]["last"] = True  # the synthesis is the last model call: it is the answer
        chosen = aggregator if aggregator is not None else self.strategy.aggregation()
        if chosen is None:
            raise ConfigError(f"{self.strategy.name}: aggregate() needs an aggregator; the strategy names none "
                              "(its aggregation() is None)")
        decide = resolve(chosen)
        strategy_name = self.strategy.name
        record = self.strategy.params() if record is None else record

        def aggregate(state: EnsembleState) -> dict[str, Any]:
            with gc_paused():
                results = [
                    _result(task, state, i, decide(task, state["candidates"][i]), strategy_name, record)
                    for i, task in enumerate(state["batch"])
                ]
            return outputs(state, results)

        async def aggregate_off_the_loop(state: EnsembleState) -> dict[str, Any]:
            return await asyncio.to_thread(aggregate, state)

        # An aggregator that runs programs or calls out (`blocking = True`) runs on a worker thread, so
        # other questions' sampling (and a server's other requests) go on; the rest take microseconds.
        node = (async_node(aggregate_off_the_loop, "aggregate") if getattr(decide, "blocking", False)
                else inline_node(aggregate, "aggregate"))
        self._add(_Step(self._unique("aggregate"), node))
        return self.compile()

    def compile(self) -> "CompiledStateGraph[Any, Any, Any, Any]":
        """The graph (the last step must set `results`, as `aggregate` does)."""
        if self._samplings:
            last = self._samplings[-1]
            if last.loop is None:
                last.finishes = True
        graph = StateGraph(self.state, context_schema=RunContext, input_schema=EnsembleInput,
                           output_schema=EnsembleOutput)
        graph.add_node("prepare", inline_node(prepare, "prepare"), input_schema=self.state)
        graph.add_edge(START, "prepare")
        self._wire(graph, self._items, "prepare", END)
        compiled = graph.compile(name=self.strategy.name)
        setattr(compiled, DIRECT, DirectRun(self._items, {loop.name: inline_node(self._check_node(loop), f"{loop.name}-check")
                                                          for loop in _loops(self._items)}, self.state))
        return compiled

    # -- wiring --------------------------------------------------------------------

    def _add(self, item: _Item) -> None:
        self._stack[-1].append(item)

    def _unique(self, name: str) -> str:
        base, k = name, 2
        while name in self._names or name == "prepare":
            name, k = f"{base}-{k}", k + 1
        self._names.add(name)
        return name

    @staticmethod
    def _entry(item: _Item) -> tuple[str, Callable[[EnsembleState], list[Send]] | None]:
        """The node an item starts at, and the router to reach it when it fans out."""
        while isinstance(item, _Loop):
            item = item.body[0]
        return item.name, item.fan_out

    def _connect(self, graph: StateGraph, source: str, item: "_Item | str") -> None:
        if isinstance(item, str):
            graph.add_edge(source, item)
            return
        target, router = self._entry(item)
        if router is None:
            graph.add_edge(source, target)
        else:
            graph.add_conditional_edges(source, router, [target])

    def _wire(self, graph: "StateGraph[Any, Any, Any, Any]", items: list[_Item], source: str | None, after: "_Item | str") -> None:
        """Add `items` after node `source` (None: already reached by a loop's router), then `after`."""
        previous = source
        for k, item in enumerate(items):
            following = items[k + 1] if k + 1 < len(items) else after
            if isinstance(item, _Step):
                graph.add_node(item.name, item.node, input_schema=self.state)
                if previous is not None:
                    self._connect(graph, previous, item)
                previous = item.name
                continue
            check = f"{item.name}-check"
            graph.add_node(check, inline_node(self._check_node(item), check), input_schema=self.state)
            self._wire(graph, item.body, previous, check)
            graph.add_conditional_edges(check, self._router(item, following), self._targets(item, following))
            previous = None  # the router leads on
        if previous is not None:
            self._connect(graph, previous, after)

    def _targets(self, loop: _Loop, following: "_Item | str") -> list[str]:
        on = following if isinstance(following, str) else self._entry(following)[0]
        return [self._entry(loop)[0], on]

    def _router(self, loop: _Loop, following: "_Item | str") -> Callable[[EnsembleState], Any]:
        back_name, back_router = self._entry(loop)
        on_name, on_router = (following, None) if isinstance(following, str) else self._entry(following)

        def route(state: Any) -> Any:
            if _loop_goes_on(loop, state):
                return back_router(state) if back_router else back_name
            return on_router(state) if on_router else on_name

        return route

    # -- node bodies -----------------------------------------------------------------

    def _sample_node(self, backend: Backend, plan: Plan, params: SamplingParams, sampling: _Sampling) -> Any:
        own = self.budget

        async def sample(state: EnsembleState) -> dict[str, Any]:
            r = state["rounds"].get(sampling.loop, 0) if sampling.loop else 0
            settled = state["stop_reasons"]
            idle: list[int] = []
            limited: dict[int, Allowance] = {}

            async def work(i: int, task: Task) -> list[Sample]:
                if sampling.settles and settled[i] is not None:
                    return []
                requests = plan(View(i, task, state, round=r))
                if not requests and sampling.settles:
                    idle.append(i)
                left = allowance(state, i, own) if requests else None
                drawn = await _run_requests(backend, params, requests, left)
                if left is not None and left.withheld:
                    limited[i] = left
                return drawn

            new = await per_task(state, work, finishes=sampling.finishes)
            update = await _absorb(state, new, sampling)
            if idle or limited:
                reasons = ["nothing left to sample" if i in idle else r for i, r in enumerate(state["stop_reasons"])]
                _budget_stops(state, update, reasons, {i: (a.withheld, a.stop_reason()) for i, a in limited.items()})
                if sampling.loop is not None and sampling is self._samplings[-1]:
                    # settled here, not by the loop's check: the question is finished now
                    advance(sum(1 for i in limited if state["stop_reasons"][i] is None))
            return update

        return sample

    def _slot_node(self, backend_for: Callable[[int], Backend], plan: Plan, params: SamplingParams,
                   sampling: _Sampling, slots: int) -> Any:
        own = self.budget

        async def run_slot(state: dict[str, Any]) -> dict[str, Any]:
            slot = state["slot"]
            backend = backend_for(slot)
            r = state["rounds"].get(sampling.loop, 0) if sampling.loop else 0
            settled = state["stop_reasons"]
            withheld = [0] * len(state["batch"])
            stops: list[str | None] = [None] * len(state["batch"])

            async def work(i: int, task: Task) -> list[Sample]:
                if sampling.settles and settled[i] is not None:
                    return []
                requests = plan(View(i, task, state, round=r, slot=slot))
                unit = max((q.params or params).max_tokens for q in requests) if requests else 1
                left = allowance(state, i, own, slot=slot, slots=slots, unit=unit) if requests else None
                drawn = await _run_requests(backend, params, requests, left)
                if left is not None and left.withheld:
                    withheld[i], stops[i] = left.withheld, left.stop_reason()
                return drawn

            samples = await per_task(state, work)
            return {"slot_samples": [SlotSamples(step=_step_key(sampling, state), slot=slot, samples=samples,
                                                 withheld=withheld, budget_stops=stops)]}

        return run_slot

    def _join_node(self, sampling: _Sampling) -> Any:
        async def join(state: EnsembleState) -> dict[str, Any]:
            key = _step_key(sampling, state)
            mine = sorted((s for s in state.get("slot_samples", []) if s.step == key), key=lambda s: s.slot)
            merged: list[list[Sample]] = [[] for _ in state["batch"]]
            for slot in mine:
                for i, samples in enumerate(slot.samples):
                    merged[i].extend(samples)
            update = await _absorb(state, merged, sampling)
            limited: dict[int, tuple[int, str | None]] = {}
            for slot in mine:
                for i, count in enumerate(slot.withheld):
                    if count:
                        before = limited.get(i, (0, None))
                        limited[i] = (before[0] + count, before[1] or slot.budget_stops[i])
            if limited:
                _budget_stops(state, update, list(state["stop_reasons"]), limited)
            if sampling.finishes:
                advance(len(state["batch"]))
            return update

        return join

    def _check_node(self, loop: _Loop) -> Update:
        # the loop holding the pipeline's last sampling step says when a question is finished
        counts = bool(self._samplings) and self._samplings[-1].loop == loop.name

        def check(state: EnsembleState) -> dict[str, Any]:
            done = state["rounds"].get(loop.name, 0) + 1
            update: dict[str, Any] = {"rounds": {**state["rounds"], loop.name: done}}
            reasons = list(state["stop_reasons"])
            if loop.until is not None:
                samples, candidates = list(state["samples"]), list(state["candidates"])
                spare, traces = list(state["spare"]), list(state["traces"])
                for i, task in enumerate(state["batch"]):
                    if reasons[i] is not None:
                        continue
                    settled = loop.until(View(i, task, state, round=done))
                    if settled is None:
                        continue
                    why = settled.reason
                    if settled.keep is not None and settled.keep < len(samples[i]):
                        used, drawn = settled.keep, len(samples[i])
                        why = f"{why} ({drawn} drawn in batched waves, {drawn - used} left unused)"
                        kept = {id(s.generation) for s in samples[i][:used]}
                        spare[i] = spare[i] + [s.generation for s in samples[i][used:]]
                        samples[i] = samples[i][:used]
                        candidates[i] = [c for c in candidates[i]
                                         if c.source.kind != "sample" or id(c.generation) in kept]
                    reasons[i] = why
                    traces[i] = traces[i] + [f"stopped: {why}"]
                update.update(stop_reasons=reasons, samples=samples, candidates=candidates, spare=spare,
                              traces=traces)
            if counts:
                after = {**state, **update}
                if _loop_goes_on(loop, after):
                    advance(sum(1 for old, new in zip(state["stop_reasons"], reasons) if old is None and new is not None))
                else:
                    advance(sum(1 for old in state["stop_reasons"] if old is None))
            return update

        return check


# -- the direct form ---------------------------------------------------------------------------


class DirectRun:
    """A pipeline's steps run in the order its compiled graph runs them, without LangGraph.

    The graph a `Pipeline` compiles is a chain: `prepare`, the steps, a fanned-out step's slots
    at once (one `Send` each) and then its join, a loop's body and its check node until the loop's
    router leads on. This runs the very node functions in that order, passes each the state as
    the graph would, and applies their updates as the state's channels do (a key declared with a
    reducer, `Annotated[list, operator.add]`, is reduced; any other is replaced), so a run gives
    the graph's Results (`tests/test_direct_runner.py` compares every strategy both ways). It
    exists because LangGraph's scheduling costs about 2 ms of CPU an invocation: nothing against
    a batch of questions, most of what a server spends answering one question a request.
    """

    def __init__(self, items: list[_Item], checks: dict[str, Any], state: Any) -> None:
        self.items, self.checks = items, checks
        self.reducers = _reducers(state)

    async def __call__(self, tasks: Sequence[Task], context: RunContext) -> list[Result]:
        runtime = _Runtime(context)
        state: dict[str, Any] = {"tasks": list(tasks)}
        self._apply(state, await inline_node(prepare, "prepare")(dict(state), runtime))
        await self._run(self.items, state, runtime)
        return list(state["results"])

    async def _run(self, items: list[_Item], state: dict[str, Any], runtime: "_Runtime") -> None:
        for item in items:
            if isinstance(item, _Loop):
                while True:
                    await self._run(item.body, state, runtime)
                    self._apply(state, await self.checks[item.name](dict(state), runtime))
                    if not _loop_goes_on(item, state):
                        break
            elif item.fan_out is None:
                self._apply(state, await item.node(dict(state), runtime))
            else:
                sends = item.fan_out(state)  # type: ignore[arg-type]  # the state is an EnsembleState's dict
                for update in await _all([item.node(send.arg, runtime) for send in sends]):
                    self._apply(state, update)

    def _apply(self, state: dict[str, Any], update: "dict[str, Any] | None") -> None:
        for key, value in (update or {}).items():
            if key not in self.reducers:
                state[key] = value
                continue
            reduce, empty = self.reducers[key]
            state[key] = reduce(state[key] if key in state else empty(), value)


@dataclass(frozen=True)
class _Runtime:
    """What a node reads of LangGraph's `Runtime`: the run's context."""

    context: RunContext


def _reducers(state: Any) -> dict[str, tuple[Callable[[Any, Any], Any], Callable[[], Any]]]:
    """The state's keys declared `Annotated[T, reducer]`: the reducer and `T` (whose `T()`
    LangGraph starts such a channel from, folding every write into it)."""
    import typing

    out: dict[str, tuple[Callable[[Any, Any], Any], Callable[[], Any]]] = {}
    for key, hint in typing.get_type_hints(state, include_extras=True).items():
        if typing.get_origin(hint) is typing.Annotated:
            reducer = next((m for m in hint.__metadata__ if callable(m)), None)
            if reducer is not None:
                out[key] = (reducer, typing.get_origin(hint.__origin__) or hint.__origin__)
    return out


def _loops(items: list[_Item]) -> list[_Loop]:
    found: list[_Loop] = []
    for item in items:
        if isinstance(item, _Loop):
            found += [item, *_loops(item.body)]
    return found


async def _all(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every coroutine at once, their results in order; the first failure cancels the rest and is
    raised as it is (as a superstep of LangGraph's does; `gather` would leave the rest running)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- what the steps share ----------------------------------------------------------------------


def _loop_goes_on(loop: _Loop, state: "Mapping[str, Any]") -> bool:
    if loop.times is not None and state["rounds"].get(loop.name, 0) >= loop.times:
        return False
    return loop.until is None or any(r is None for r in state["stop_reasons"])


def _step_key(sampling: _Sampling, state: Any) -> str:
    if sampling.loop is None:
        return sampling.name
    return f"{sampling.name}@{sampling.loop}={state['rounds'].get(sampling.loop, 0)}"


async def _run_requests(backend: Backend, params: SamplingParams, requests: Sequence[Request],
                        budget: Allowance | None = None) -> list[Sample]:
    if not requests:
        return []
    if budget is not None:
        return await _run_within(backend, params, requests, budget)
    if len(requests) == 1:  # the common case: no extra asyncio task per question
        r = requests[0]
        batches = [await _generate(backend, r, r.params or params, r.n, r.first_index)]
    else:
        batches = await asyncio.gather(
            *(_generate(backend, r, r.params or params, r.n, r.first_index) for r in requests)
        )
    if len(requests) == 1:
        origin = requests[0].origin
        return [trusted(Sample, source=origin, generation=g) for g in batches[0]]
    return [trusted(Sample, source=r.origin, generation=g) for r, gens in zip(requests, batches) for g in gens]


async def _run_within(backend: Backend, params: SamplingParams, requests: Sequence[Request],
                      budget: Allowance) -> list[Sample]:
    """The requests in order, each started only as far as its worst case fits the budget; the rest
    of a request is drawn in further waves (the next sample indices) while it fits, after the
    admitted samples' real cost is known. Deterministic: the same samples, in the same order,
    cost the same on a rerun (cached samples count as fresh ones)."""
    drawn: list[Sample] = []
    for r in requests:
        p = r.params or params
        wanted, first = r.n, r.first_index
        while wanted > 0:
            k = budget.admit(wanted, p.max_tokens)
            if k == 0:
                budget.withhold(wanted)
                break
            try:
                generations = await _generate(backend, r, p, k, first)
            except BaseException:
                budget.charge(k, p.max_tokens, [])
                raise
            budget.charge(k, p.max_tokens, generations)
            drawn.extend(trusted(Sample, source=r.origin, generation=g) for g in generations)
            wanted, first = wanted - k, first + k
    return drawn


async def _generate(backend: Backend, request: Request, params: SamplingParams, n: int, first: int) -> list[Generation]:
    generations = await backend.generate(request.messages, params, n, first)
    if params.stop_below_confidence is not None:  # where the backend could not stop them while decoding
        generations = [cut_where_stopped(g, params) for g in generations]
    return generations


def _budget_stops(state: EnsembleState, update: dict[str, Any], reasons: list[str | None],
                  limited: Mapping[int, "tuple[int, str | None]"]) -> None:
    """Record what a budget withheld from each task and settle it: nothing more will fit, so a loop
    does not ask again (`stop_reasons`, the trace, `withheld`)."""
    traces = list(update.get("traces", state["traces"]))
    withheld = list(state["withheld"])
    for i, (count, why) in limited.items():
        withheld[i] += count
        traces[i] = traces[i] + [f"budget: {count} not drawn, {why or 'budget spent'}"]
        if reasons[i] is None:
            reasons[i] = why or "budget spent"
    update.update(stop_reasons=reasons, traces=traces, withheld=withheld)


async def _absorb(state: EnsembleState, new: list[list[Sample]], sampling: _Sampling) -> dict[str, Any]:
    """The update for `new` samples: added to (or replacing) the voting ones, their answers read."""
    with gc_paused():
        samples, candidates, issued, aux = [], [], [], []
        for i, (task, fresh) in enumerate(zip(state["batch"], new)):
            old, cands, k = state["samples"][i], state["candidates"][i], state["issued"][i]
            if sampling.replace and fresh:
                aux.append(state["aux"][i] + [s.generation for s in old])
                cands = [c for c in cands if c.source.kind != "sample"]
                old = []
            else:
                aux.append(state["aux"][i])
            added = []
            for sample in fresh:
                g = sample.generation
                parts = sampling.split(task, sample) if sampling.split else [(sample.source, g.text)]
                for source, text in parts:
                    answer = sampling.read(task, sample) if sampling.read else extract(task, text)
                    # every field is already valid: skip validation (the hot path of warm reruns)
                    added.append(trusted(Candidate, index=k, text=text, answer=answer, generation=g, source=source))
                    k += 1
            samples.append(old + fresh)
            candidates.append(cands + added if added else cands)
            issued.append(k)
    for i, task in enumerate(state["batch"]):
        if new[i] and FORMATS[task.format].merge_by_value:
            candidates[i] = await _merge_equivalent(candidates[i])
    return {
        "samples": samples, "candidates": candidates, "issued": issued, "aux": aux,
        "traces": [t + [sampling.name] for t in state["traces"]],
    }


async def _merge_equivalent(candidates: list[Candidate]) -> list[Candidate]:
    """Math answers equal in value get one key (math-verify), so they never split the vote."""
    mapping = await aunify_keys([c.answer for c in candidates if c.answer is not None and c.source.kind == "sample"])
    return [
        c if c.answer is None or mapping.get(c.answer, c.answer) == c.answer
        else c.model_copy(update={"answer": mapping[c.answer]})
        for c in candidates
    ]


def _result(task: Task, state: EnsembleState, i: int, decision: Decision, strategy: str,
            record: dict[str, Any]) -> Result:
    trace = state["traces"][i] + ["aggregate"]
    note = decision.params.get("note")
    if note:
        trace.append(f"{decision.aggregator}: {note}")
    candidates = state["candidates"][i]
    return trusted(
        Result,
        task=task,
        answer=decision.answer,
        text=response_text(candidates, decision),
        confidence=decision.confidence,
        tally=decision.tally,
        candidates=list(candidates),
        usage=Usage.of([s.generation for s in state["samples"][i]] + state["aux"][i], spare=state["spare"][i],
                       withheld=state["withheld"][i]),
        decision=decision,
        strategy=strategy,
        strategy_params=record,
        trace=trace,
        stop_reason=state["stop_reasons"][i],
    )


def outputs(state: EnsembleState, results: list[Result]) -> dict[str, Any]:
    """The graph's output for `results`: all of them, and for one question its answer too."""
    update: dict[str, Any] = {"results": results}
    if state.get("single"):
        update.update(result=results[0], answer=results[0].answer, confidence=results[0].confidence)
    return update


__all__ = ["Pipeline", "Plan", "Request", "RunContext", "Settled", "Until", "View", "outputs"]


def embeddable(graph: "CompiledStateGraph[Any, Any, Any, Any]",
               context: RunContext | None = None) -> "CompiledStateGraph[Any, Any, Any, Any]":
    """`graph` as a user's LangGraph app takes it, sync or async: one node with both forms that runs
    the ensemble graph (asynchronously, on a private event loop under `invoke`) with `context`.

    Takes ``question``, ``task`` or ``tasks``; gives ``results`` and, for one question, ``result``,
    ``answer`` and ``confidence``. The ensemble's own steps stay async-only and run on LangGraph's
    fast path; only this one node pays for the public sync/async wrapper.
    """
    from langchain_core.runnables import RunnableLambda

    chosen = context or RunContext()

    async def arun(state: EnsembleState) -> dict[str, Any]:
        given = {k: v for k, v in state.items() if k in ("question", "task", "tasks") and v is not None}
        return dict(await graph.ainvoke(given, context=chosen))

    def run(state: EnsembleState) -> dict[str, Any]:
        return run_sync(arun(state))

    outer = StateGraph(EnsembleState, input_schema=EnsembleInput, output_schema=EnsembleOutput)
    outer.add_node("ensemble", RunnableLambda(run, afunc=arun, name=graph.get_name()))
    outer.add_edge(START, "ensemble")
    outer.add_edge("ensemble", END)
    return outer.compile(name=graph.get_name())
