"""The `manyminds` command line: run one question, benchmark a task set, inspect a cache.

Errors a user can fix (a bad argument, an unknown backend, an unusable cache
file) are printed as one line on stderr with exit status 2, never as a
traceback; whatever was already cached stays cached.
"""

from __future__ import annotations

import enum
import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from manyminds.errors import ManymindsError, one_line
from manyminds.redact import public_text, redact
from manyminds.types import MAX_SAMPLES, AnswerFormat

if TYPE_CHECKING:
    from manyminds.strategies.base import Strategy
    from manyminds.types import Task

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Many LLM samples, combined well: self-consistency and other ensembles.",
)
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or merge generation caches.")
app.add_typer(cache_app, name="cache")

out = Console(width=None if sys.stdout.isatty() else 120)



class PromptStyle(str, enum.Enum):
    cot = "cot"
    direct = "direct"
    raw = "raw"


def _choices(name: str, values: list[str]) -> type[enum.Enum]:
    """A str enum of registered names, for typer's choices (generated, never kept by hand)."""
    return enum.Enum(name, {v.replace("-", "_"): v for v in values}, type=str)  # type: ignore[return-value]  # typeshed types Enum's functional API as returning a member, not a class


def _strategy_names() -> list[str]:
    from manyminds.strategies import names

    return names()


def _verifier_names() -> list[str]:
    from manyminds.verifiers.base import REGISTRY

    return REGISTRY.names()


def _aggregator_names() -> list[str]:
    from manyminds.aggregators import available

    return sorted(available())


if TYPE_CHECKING:  # str enums generated from the registries: to a type checker, their members are strings
    StrategyName = str
else:
    StrategyName = _choices("StrategyName", _strategy_names())


def _value(choice: "enum.Enum | str") -> str:
    """A choice's name, whether typer gave the enum member or the caller a string."""
    return str(choice.value) if isinstance(choice, enum.Enum) else choice


def _verifier_options(backend, allow_code: bool, allow_unisolated: bool = False, visible_only: bool = False):
    """What a named verifier is built with: judges use the run's own backend."""
    from manyminds.verifiers.base import VerifierOptions

    return VerifierOptions(backend=backend, allow_code_execution=allow_code,
                           allow_unisolated_execution=allow_unisolated, visible_tests_only=visible_only)


def _make(name: str, n: int | None, *, verifier: "enum.Enum | str | None" = None, options=None, **settings):
    """`strategies.make` with only the settings the user gave (None: not given, the strategy's default)."""
    from manyminds.strategies import make

    given = {k: v for k, v in settings.items() if v is not None}
    return make(name, n, verifier=None if verifier is None else _value(verifier), verifier_options=options, **given)


def _aggregator_spec(text: str | None, allow_code: bool = False, allow_unisolated: bool = False):
    """The aggregator a user named, built once to check it before anything is opened or created.

    The code-execution flags reach an aggregator that runs code (`execution`) as they reach the
    unit-test verifier: as its `allow_code_execution` / `allow_unisolated_execution` arguments."""
    import inspect

    from manyminds.aggregators.base import parse_spec

    if not text:
        return None
    spec = parse_spec(text)
    try:
        accepts = set(inspect.signature(spec.factory).parameters)
    except (TypeError, ValueError):
        accepts = set()
    granted = {name: True for name, given in (("allow_code_execution", allow_code),
                                              ("allow_unisolated_execution", allow_unisolated))
               if given and name in accepts and name not in spec.params}
    if granted:
        spec = spec.model_copy(update={"params": {**spec.params, **granted}})
    spec.build()
    return spec


def _plan_pairs(path: Path | None):
    if path is None:
        return None
    from manyminds.strategies.discovery import DiversityPlan

    return DiversityPlan.load(path).pairs


def _stop_rule(spec: str | None):
    from manyminds.stopping import parse_rule

    return parse_rule(spec) if spec else None


VerifierOpt = Annotated[Optional[str], typer.Option(
    "--verifier", help="For the strategies that need one (best-of-n, verifier-resampling, verified-vote): "
    + ", ".join(_verifier_names()) + "; parameters as NAME:KEY=VALUE,... (p-true:samples=3).")]
AggregatorOpt = Annotated[Optional[str], typer.Option(
    "--aggregator", "-a", help="How samples vote, for voting strategies: " + ", ".join(_aggregator_names())
    + "; parameters as NAME:KEY=VALUE,... (weighted:by=logprob).")]
PlanOpt = Annotated[Optional[Path], typer.Option(
    "--plan", help="div-se, idiv-se: the (persona, approach) pairs of a plan saved by `manyminds discover`.")]
ExemplarsOpt = Annotated[Optional[str], typer.Option(
    "--exemplars", help="Few-shot exemplars before each question: a named set (gsm8k-cot-8, mmlu-5).")]
StopOpt = Annotated[Optional[str], typer.Option(
    "--stop", help="Sample in waves and stop early: esc, esc:WINDOW, adaptive, adaptive:THRESHOLD.")]
BudgetOpt = Annotated[Optional[str], typer.Option(
    "--budget", help="Per question, over every model call: TOKENS (completion tokens), or tokens=N,samples=M. "
                     "No request starts that could exceed it.", show_default=False)]


def _budget(text: str | None) -> dict[str, int] | None:
    """`--budget`: a number of completion tokens, or `tokens=N,samples=M` (the spec grammar's keys)."""
    if text is None:
        return None
    from manyminds.plugins import parse_spec

    if text.strip().isdigit():
        return {"tokens": int(text)}
    _, params = parse_spec(f"budget:{text}", "budget")
    unknown = sorted(set(params) - {"tokens", "samples"})
    if unknown or not params:
        raise ManymindsError(f"--budget takes TOKENS or tokens=N,samples=M, not {text!r}")
    return params  # the strategy validates the values (a clear error naming the field)


AllowCodeOpt = Annotated[
    bool, typer.Option("--allow-code-execution", help="Let the unit-test verifier and the execution aggregator run model-written code (sandboxed).")
]
AllowUnisolatedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unisolated-code-execution",
        help="Where bubblewrap cannot isolate it, run model-written code with resource limits only (unsafe).",
    ),
]


def _dataset_names() -> list[str]:
    from manyminds.datasets.catalog import DATASETS  # no data is read

    return list(DATASETS)


DEFAULT_CACHE = "~/.cache/manyminds/generations.db"

BackendOpt = Annotated[
    str, typer.Option("--backend", "-b", help="local | openai:MODEL | openai:MODEL@BASE_URL")
]
CacheOpt = Annotated[
    Optional[str],
    typer.Option(
        "--cache",
        help=f"SQLite cache file (default: $MANYMINDS_CACHE or {DEFAULT_CACHE})",
        show_default=False,
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Generate everything anew; store nothing.")]


def _cache_path(cache: str | None, no_cache: bool) -> Path | None:
    if no_cache:
        return None
    if cache is not None:
        return Path(cache).expanduser()
    path = Path(os.environ.get("MANYMINDS_CACHE") or DEFAULT_CACHE).expanduser()
    if not os.environ.get("MANYMINDS_CACHE"):
        path.parent.mkdir(parents=True, exist_ok=True)  # only the default location is created for you
    return path


def _tally_table(result, title: str) -> Table:
    table = Table(title=title)
    table.add_column("answer")
    table.add_column("votes", justify="right")
    table.add_column("share", justify="right")
    total = sum(result.tally.values()) or 1
    gold = result.task.gold
    from manyminds.answers import normalise_gold

    gold_key = normalise_gold(result.task) if gold is not None else None
    for answer, votes in sorted(result.tally.items(), key=lambda kv: -kv[1]):
        mark = " (gold)" if answer == gold_key else ""
        chosen = " <- chosen" if answer == result.answer else ""
        table.add_row(f"{escape(str(answer))}{mark}{chosen}", f"{votes:g}", f"{votes / total:.0%}")
    silent = sum(1 for c in result.candidates if c.answer is None)
    if silent:
        table.add_row("[dim](no answer)[/dim]", str(silent), "-")
    return table


@app.command()
def run(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    n: Annotated[Optional[int], typer.Option("-n", "--samples", min=1, max=MAX_SAMPLES, show_default=False,
                                             help="Samples to draw (the budget; default the strategy's, 8 for most).")] = None,
    backend: BackendOpt = "local",
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (default the strategy's, 0.7).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        help="Completion tokens per sample (default the strategy's).", show_default=False)] = None,
    prompt: Annotated[Optional[PromptStyle], typer.Option(
        help="Chain of thought, answer only, or the question as given (raw); default cot.")] = None,
    answer_format: Annotated[
        AnswerFormat, typer.Option("--format", help="How to read answers.")
    ] = AnswerFormat.NUMBER,
    seed: Annotated[Optional[int], typer.Option(help="Base seed for reproducible samples.")] = None,
    strategy_name: Annotated[StrategyName, typer.Option("--strategy", "-s", help="How to combine samples.")] = StrategyName("self-consistency"),
    aggregator: AggregatorOpt = None,
    stop: StopOpt = None,
    plan: PlanOpt = None,
    exemplars: ExemplarsOpt = None,
    verifier: VerifierOpt = None,
    allow_code_execution: AllowCodeOpt = False,
    allow_unisolated_code_execution: AllowUnisolatedOpt = False,
    budget: BudgetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer one question with an ensemble strategy (self-consistency by default) and show the vote."""
    from manyminds.backends import from_spec
    from manyminds.session import Session
    from manyminds.types import Task

    task = Task(question=question, format=answer_format)
    chosen = from_spec(backend)
    strategy = _make(
        _value(strategy_name), n, verifier=verifier,
        options=_verifier_options(chosen, allow_code_execution, allow_unisolated_code_execution),
        temperature=temperature, max_tokens=max_tokens, prompt=prompt.value if prompt else None, seed=seed,
        aggregator=_aggregator_spec(aggregator, allow_code_execution, allow_unisolated_code_execution),
        stop=_stop_rule(stop), pairs=_plan_pairs(plan), exemplars=exemplars, budget=_budget(budget),
    )
    # The session opens the cache before any model loads (a bad path fails first) and closes it
    # after the run is stored, however the run ends.
    with Session(chosen, cache=_cache_path(cache, no_cache), progress=False) as session:
        _start_early(chosen, strategy, task, session.cache)
        result = session.solve(strategy, task)
        if session.cache is not None:
            session.cache.runs.record(f"run {strategy.name}", [result])
    if as_json:
        print(
            json.dumps(
                {
                    "answer": result.answer,
                    "text": result.text,
                    "confidence": result.confidence,
                    "tally": result.tally,
                    "stop_reason": result.stop_reason,
                    "candidates": [
                        {"index": c.index, "text": c.text, "answer": c.answer, "source": str(c.source),
                         "votes": c.votes} for c in result.candidates
                    ],
                    "usage": result.usage.model_dump(),
                    "aggregator": result.decision.aggregator,
                    "strategy": result.strategy,
                    "strategy_params": result.strategy_params,
                    "trace": result.trace,
                }
            )
        )
        return
    out.print(f"[bold]answer:[/bold] {result.answer}   [bold]confidence:[/bold] {result.confidence:.0%}")
    out.print(_tally_table(result, f"{result.strategy}: votes ({result.decision.aggregator} decided)"))
    u = result.usage
    out.print(
        f"usage: {u.samples} samples ({u.cached_samples} from cache), {u.calls} calls, "
        f"{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens"
        + (f"; {u.withheld_samples} not drawn: {escape(result.stop_reason or 'budget spent')}" if u.withheld_samples else "")
    )


def _start_early(backend, strategy, task, store) -> None:
    """Let an in-process backend start on the samples the cache lacks while LangGraph imports.

    Importing LangGraph takes most of a second; the embedded model can load
    and sample meanwhile. Only backends with a `prefetch` method take part.
    """
    from manyminds.strategies import SelfConsistency

    prefetch = getattr(backend, "prefetch", None)
    if prefetch is None or not isinstance(strategy, SelfConsistency):
        return
    from manyminds.cache import request_key

    messages, params = strategy.messages(task), strategy.sampling_params()
    wanted = [0] if params.greedy else list(range(strategy.n))
    if store is not None:
        have = store.lookup(request_key(backend.cache_identity(), messages, params), wanted)
        wanted = [i for i in wanted if i not in have]
    if wanted:
        prefetch(messages, params, wanted)


@app.command("bench")
def bench(
    dataset: Annotated[Optional[str], typer.Argument(
        help="A data set: " + ", ".join(_dataset_names()) + " (or --data FILE).", show_default=False)] = None,
    strategies: Annotated[
        Optional[list[StrategyName]], typer.Option("--strategy", "-s", help="Strategies to compare (repeatable; "
                                                   "default self-consistency).")] = None,
    budgets: Annotated[Optional[list[int]], typer.Option(
        "-n", "--samples", min=1, max=MAX_SAMPLES,
        help="Sample budgets per question (repeatable; default each strategy's own, 8 for most).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-k", min=1, help="Number of questions (default all).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", "--level", help="The data set's split (arithmetic: "
                                                 "its level).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Shuffle the questions with this seed before --limit; "
                                                "also the samples' base seed.")] = None,
    backend: BackendOpt = "local",
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    max_failures: Annotated[Optional[int], typer.Option(min=0, help="End the run once more questions than this fail.")] = None,
    baseline: Annotated[bool, typer.Option(help="Add one sample per question (self-consistency n = 1).")] = True,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (default the strategy's, 0.7).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        help="Completion tokens per sample (default the strategy's).", show_default=False)] = None,
    prompt: Annotated[Optional[PromptStyle], typer.Option(
        help="Chain of thought, answer only, or the question as given (raw); default cot.")] = None,
    aggregator: AggregatorOpt = None,
    stop: StopOpt = None,
    plan: PlanOpt = None,
    exemplars: ExemplarsOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Questions in flight at once.")] = 16,
    verifier: VerifierOpt = None,
    allow_code_execution: AllowCodeOpt = False,
    allow_unisolated_code_execution: AllowUnisolatedOpt = False,
    budget: BudgetOpt = None,
    judge: Annotated[Optional[str], typer.Option(help="Backend SPEC judging pairwise (alpaca_eval; default: --backend).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Your own .jsonl, .json or .csv file.")] = None,
    question_field: Annotated[str, typer.Option(help="--data: the question's field.")] = "question",
    answer_field: Annotated[str, typer.Option(help="--data: the gold answer's field (GSM8K '#### 18' is read).")] = "answer",
    choices_field: Annotated[Optional[str], typer.Option(help="--data: the options' field (a list, or 'a|b|c').")] = None,
    id_field: Annotated[Optional[str], typer.Option(help="--data: a record id field.")] = None,
    answer_format: Annotated[AnswerFormat, typer.Option("--format", help="--data: how to read answers.")] = AnswerFormat.NUMBER,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per run.")] = False,
    allow_greedy: Annotated[bool, typer.Option(
        "--allow-greedy", help="Run voting strategies at temperature 0 (as one draw each, not n copies).")] = False,
    oracle: Annotated[bool, typer.Option(
        "--oracle", help="Allow verifiers that read the gold answer or all the scorer's tests (math, unit tests); "
                         "such runs are labelled [oracle].")] = False,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="local|auto|ADDRESS",
        help="Shard the questions over Ray actors, each with its own backend built from --backend: 'local' starts "
             "Ray here, 'auto' joins this machine's cluster, or a cluster's address. Needs manyminds[ray].")] = None,
    ray_workers: Annotated[int, typer.Option(min=1, help="--ray: actors in the pool.")] = 2,
    ray_gpus: Annotated[float, typer.Option(min=0, help="--ray: GPUs each actor reserves (1 for a vLLM engine "
                                                        "each; tp=K needs K).")] = 0,
) -> None:
    """Compare strategies and budgets on the same questions of a data set; resumable with the same command."""
    from manyminds.backends import from_spec
    from manyminds.bench import run as run_bench
    from manyminds.bench.runner import most_split
    from manyminds.strategies import by_name, default_budget
    from manyminds import datasets

    if (dataset is None) == (data is None):
        raise ManymindsError("name a data set or pass --data FILE (one of the two)")
    if data is not None:
        source: "str | list[Task]" = datasets.from_file(data, question_field=question_field, answer_field=answer_field,
                                            choices_field=choices_field, id_field=id_field, format=answer_format)
        scorer_name = "answer"
    else:
        assert dataset is not None  # one of the two, checked above
        scorer_name = datasets.get(dataset).scorer
        source = dataset
    chosen = from_spec(backend)
    judge_backend = from_spec(judge) if judge else chosen
    # Without --oracle a unit-test verifier sees only the visible tests; the scorer runs them all.
    options = _verifier_options(chosen, allow_code_execution, allow_unisolated_code_execution, visible_only=not oracle)
    code_verifier = None
    if scorer_name == "unit-tests":
        if not allow_code_execution:
            raise ManymindsError(f"{dataset} is scored by running the code: add --allow-code-execution")
        from manyminds.verifiers.base import make_verifier

        code_verifier = make_verifier("unit-tests", _verifier_options(chosen, True, allow_unisolated_code_execution))
    settings: dict[str, Any] = dict(temperature=temperature, max_tokens=max_tokens, prompt=prompt.value if prompt else None, seed=seed,
                    exemplars=exemplars)
    methods: "dict[str, Strategy]" = {}
    if baseline:
        methods["single sample"] = _make("self-consistency", 1, **settings)
    settings.update(aggregator=_aggregator_spec(aggregator, allow_code_execution, allow_unisolated_code_execution),
                    stop=_stop_rule(stop), pairs=_plan_pairs(plan), budget=_budget(budget))
    for choice in strategies or ["self-consistency"]:
        name = _value(choice)
        for n in sorted(set(budgets)) if budgets else [default_budget(by_name(name))]:  # smaller first: the larger
            verifying = by_name(name).needs_verifier  # reuse their samples; only verifying strategies take one
            methods[f"{name} (n={n})"] = _make(name, n, verifier=verifier if verifying else None, options=options,
                                               **settings)
    path = _cache_path(cache, no_cache)
    tuned_on: tuple[str, ...] = ()
    if plan is not None:
        from manyminds.strategies.discovery import DiversityPlan

        tuned_on = DiversityPlan.load(plan).seen
        if tuned_on:
            print(f"note: the {len(tuned_on)} questions the plan was tuned on are left out of the evaluation",
                  file=sys.stderr)
    distributed: dict[str, Any] = {}
    if ray is not None:
        from manyminds.bench.executors import require_ray

        require_ray()
        distributed = dict(executor="ray", ray_address=ray, workers=ray_workers,
                           actor_options={"num_gpus": ray_gpus} if ray_gpus else None)
    report = run_bench(source, methods, backend=chosen, cache=path, split=split, limit=limit, seed=seed,
                       verifier=code_verifier, judge=judge_backend, concurrency=concurrency,
                       max_failures=max_failures, allow_greedy=allow_greedy, oracle=oracle, exclude=tuned_on,
                       **distributed)
    if as_json:
        for r in report.runs:
            low, high = r.interval()
            print(json.dumps({"run": r.run_id, "label": r.label, "strategy": r.strategy, "params": r.params,
                              "questions": r.questions,
                              "accuracy": r.accuracy, "interval": [low, high], "failures": r.failures,
                              "usage": r.usage.model_dump(), "usage_this_attempt": r.usage_this_attempt.model_dump(),
                              "resumed": r.resumed, "meta": r.meta}))
        return
    from manyminds.bench.stats import comparable, paired, single_sample

    first = report.runs[0].meta
    where = f"{first.get('dataset')}" + (f" ({first.get('split')})" if first.get("split") else "")
    table = Table(title=f"{where}: {report.runs[0].questions} questions, backend {public_text(backend)}")
    for column in ("method", "accuracy", "95% CI", "samples/q", "tokens/q", "cached", "calls", "failed", "run"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=column == "method")
    for r in report.runs:
        u, now, low_high = r.usage, r.usage_this_attempt, r.interval()
        scored = len(r.scored) or 1
        table.add_row(escape(r.label), f"{r.accuracy:.1%} ({r.correct:g}/{len(r.scored)})",
                      f"{low_high[0]:.1%}-{low_high[1]:.1%}", f"{u.samples / scored:.3g}",
                      f"{u.total_tokens / scored:.0f}", str(now.cached_samples), str(now.calls), str(r.failures),
                      "-" if path is None else f"{r.run_id}{' resumed' if r.resumed else ''}")
        point = single_sample(r) if u.samples > len(r.scored) else None
        if point is not None:  # the honest one-sample figure: every stored sample, not sample 0
            table.add_row(f"  one sample: pass@1 over its {point['samples']}", f"{point['pass']:.1%}",
                          f"{point['low']:.1%}-{point['high']:.1%}", "1", "", "", "", "", "")
    out.print(table)
    pairs = [c for a, b in comparable(report.runs) if (c := paired(a, b)) is not None]
    for c in pairs:
        out.print(f"{escape(c['b'])} - {escape(c['a'])}: {100 * c['difference']:+.1f} points "
                  f"(95% CI {100 * c['low']:+.1f} to {100 * c['high']:+.1f}; McNemar p = {c['mcnemar_p']:.3g}, "
                  f"{c['only_b']} vs {c['only_a']} questions only one got right)")
    if any(r.resumed for r in report.runs):
        out.print("samples/q and tokens/q are the whole run's; cached and calls, this attempt's (resumed runs read "
                  "back the questions done before)")
    from manyminds.answers import is_correct

    voting = [r for r in report.runs if r.label != "single sample" and r.results and any(x.tally for x in r.results)]
    if voting and scorer_name == "answer":
        voted = voting[-1].results
        alone = {x.task.id: x for x in report.run("single sample").results} if baseline else {}
        fixed = [v for v in voted if is_correct(v) and alone.get(v.task.id) is not None and not is_correct(alone[v.task.id])]
        example = fixed[0] if fixed else most_split(voted)
        note = "one sample was wrong, the vote is right" if fixed else "the closest vote"
        out.print(_tally_table(example, f"votes for {example.task.question[:80]!r} (gold {example.task.gold}; {note})"))


@app.command("discover")
def discover_command(
    dataset: Annotated[str, typer.Argument(help="A data set with gold answers: " + ", ".join(_dataset_names()) + ".")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to save the plan (JSON).")] = Path("div-se-plan.json"),
    split: Annotated[Optional[str], typer.Option("--split", help="The data set's split.")] = None,
    propose_on: Annotated[int, typer.Option(min=1, help="Questions the model proposes approaches on.")] = 4,
    held_out: Annotated[int, typer.Option(min=1, help="Questions each pair is tried on.")] = 16,
    approaches: Annotated[int, typer.Option(min=1, help="Approaches to try.")] = 4,
    personas: Annotated[int, typer.Option(min=1, help="Personas to try.")] = 2,
    keep: Annotated[int, typer.Option(min=1, help="Pairs to keep.")] = 3,
    seed: Annotated[Optional[int], typer.Option(help="Which questions (shuffled with this seed).")] = None,
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per trial.")] = 256,
    backend: BackendOpt = "local",
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """DIV-SE's discovery step: propose approaches and personas, try every pair on held-out questions, save the best."""
    from manyminds import datasets
    from manyminds.backends import from_spec
    from manyminds.strategies.discovery import discover

    if out_file.is_dir() or not out_file.expanduser().parent.is_dir():
        raise ManymindsError(f"--out {out_file}: {'is a folder' if out_file.is_dir() else 'its folder does not exist'}"
                             "; give a file path in an existing folder (nothing was generated)")
    if not os.access(out_file.expanduser().parent, os.W_OK):
        raise ManymindsError(f"--out {out_file}: its folder is not writable (nothing was generated)")
    tasks = datasets.load(dataset, split, limit=propose_on + held_out, seed=seed)
    plan = discover(tasks, backend=from_spec(backend), propose_on=propose_on, held_out=held_out, approaches=approaches,
                    personas=personas, keep=keep, cache=_cache_path(cache, no_cache), max_tokens=max_tokens)
    plan.save(out_file)
    table = Table(title=f"DIV-SE plan for {dataset}: {len(plan.pairs)} of {plan.tried} pairs kept ({out_file})")
    for column in ("persona", "approach", "held-out accuracy"):
        table.add_column(column, justify="right" if column == "held-out accuracy" else "left")
    for (persona, approach), accuracy in zip(plan.pairs, plan.accuracy):
        table.add_row(persona, approach, f"{accuracy:.0%}")
    out.print(table)


@app.command("serve")
def serve_command(
    backend: BackendOpt = "local",
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option(
        "--api-key-env", help="Name of an environment variable holding the key clients must send as a bearer token.")] = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Ensembles running at once.")] = 8,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests waiting for a slot; beyond them, 429.")] = 32,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body accepted.")] = 1_000_000,
    max_samples_per_request: Annotated[int, typer.Option(
        min=1, help="Samples and upstream calls one request may cause, whatever its strategy and settings.")] = 1024,
    upstream_models: Annotated[Optional[list[str]], typer.Option(
        "--upstream-model", help="A model requests may name after ':' (repeatable; '*' for any). "
                                 "Default: the backend's own only.")] = None,
    greedy: Annotated[str, typer.Option(
        help="A sampling ensemble asked for temperature 0: 'sample' at its own temperature (said in the "
             "reply) or 'refuse' it.")] = "sample",
    upstream_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds one upstream call may take.")] = 15.0,
    upstream_deadline: Annotated[float, typer.Option(
        min=1.0, help="Seconds one upstream call may take with its retries; then 504 (timeout) or 502.")] = 30.0,
    grace: Annotated[int, typer.Option(min=0, help="Seconds requests in flight get to finish on SIGTERM.")] = 30,
    runner: Annotated[str, typer.Option(
        help="'direct': each request's ensemble runs its steps without LangGraph's scheduler (same results, "
             "milliseconds less a request); 'langgraph': through the compiled graphs, requests batched.")] = "direct",
) -> None:
    """An OpenAI-compatible server whose models are ensembles: POST /v1/chat/completions with model
    STRATEGY[-N][:UPSTREAM_MODEL] (self-consistency-8, moa-6:gpt-4o-mini); GET /v1/models lists them."""
    from manyminds.server import ServerConfig, serve

    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise ManymindsError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
    if greedy not in ("sample", "refuse"):
        raise ManymindsError(f"--greedy takes 'sample' or 'refuse', not {greedy!r}")
    if runner not in ("direct", "langgraph"):
        raise ManymindsError(f"--runner takes 'direct' or 'langgraph', not {runner!r}")
    config = ServerConfig(backend=backend, cache=_cache_path(cache, no_cache), api_key=key,
                          max_concurrency=max_concurrency, max_queue=max_queue, max_body_bytes=max_body_bytes,
                          max_samples_per_request=max_samples_per_request,
                          upstream_models=tuple(upstream_models or ()), greedy=greedy,  # type: ignore[arg-type]
                          upstream_timeout=upstream_timeout, upstream_deadline=upstream_deadline, runner=runner)
    serve(config, host=host, port=port, graceful_seconds=grace)


@app.command("report")
def report_command(
    db: Annotated[Path, typer.Argument(help="A cache file holding benchmark runs.")],
    runs: Annotated[Optional[list[int]], typer.Option("--run", help="Run ids (repeatable; default all).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.md, report.json and the plots.")] = Path("report"),
    prices: Annotated[Optional[list[str]], typer.Option(
        "--price", help="MODEL=PRICE per token, or PRICE for every model (repeatable): adds cost per question.")] = None,
) -> None:
    """Markdown, JSON and PNG from stored runs: accuracy with intervals, accuracy against samples and compute, calibration."""
    from manyminds.bench.report import load_runs, write_report

    table: dict[str, float] = {}
    for spec in prices or []:
        model, _, value = spec.rpartition("=")
        try:
            table[model or "*"] = float(value)
        except ValueError:
            raise ManymindsError(f"--price {spec!r}: expected MODEL=PRICE or PRICE (a number per token)") from None
        if not 0 <= table[model or "*"] < float("inf"):
            raise ManymindsError(f"--price {spec!r}: a price is a finite number >= 0 per token")
    if out_dir.exists() and not out_dir.is_dir():
        raise ManymindsError(f"--out {out_dir} is a file: give a folder for the report")
    written = write_report(load_runs(db, runs), out_dir, prices=table or None, title=f"Benchmark report: {db.name}",
                           viewer=f"manyminds view {db}")
    for name, path in written.items():
        out.print(f"{name}: {path}")
    out.print(f"every question's candidates: manyminds view {db}")


@app.command("view")
def view_command(
    db: Annotated[Path, typer.Argument(help="A cache file holding runs (benchmark or `run`).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8765,
) -> None:
    """Browse the runs in a cache in a web page: accuracy with intervals, the plots, every question's
    candidates, votes, verdicts and decision, filters, and two runs side by side. Read-only."""
    from manyminds.view import make_server

    server = make_server(db, host=host, port=port)
    shown = f"http://{host}:{server.server_address[1]}/"
    out.print(f"manyminds view: {shown} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("plugins")
def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per entry.")] = False,
) -> None:
    """What is loaded: every strategy, aggregator, verifier, stopping rule and backend, from where, at which version."""
    from manyminds.plugins import distribution_of

    rows = []
    for kind, registry in _registries().items():
        for name, entry in sorted(registry.all().items()):
            dist, version = distribution_of(entry)
            where = f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', type(entry).__name__)}"
            rows.append({"kind": kind, "name": name, "provided_by": where, "distribution": dist if version else None,
                         "version": version})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title="manyminds plugins (built-ins register as plugins do)")
    for column in ("kind", "name", "provided by", "distribution"):
        table.add_column(column, no_wrap=column != "provided by")
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["version"] else "[dim](not installed)[/dim]"
        table.add_row(row["kind"], escape(row["name"]), escape(row["provided_by"]), dist)
    out.print(table)


def _registries() -> dict:
    from manyminds.aggregators.base import REGISTRY as aggregators
    from manyminds.backends.base import REGISTRY as backends
    from manyminds.stopping import REGISTRY as stopping
    from manyminds.strategies.base import REGISTRY as strategies
    from manyminds.verifiers.base import REGISTRY as verifiers

    return {"strategy": strategies, "aggregator": aggregators, "verifier": verifiers, "stopping rule": stopping,
            "backend": backends}


@cache_app.command("stats")
def cache_stats(path: Annotated[str, typer.Argument(help="The cache file.")]) -> None:
    """Rows, requests, tokens and models stored in a cache file."""
    from manyminds.cache import GenerationCache

    target = Path(path).expanduser()
    if not target.is_file():
        raise ManymindsError(f"no cache file at {target}")
    with GenerationCache(target, read_only=True) as store:
        stats = store.stats()
    table = Table(title=f"cache {stats.path}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("requests", str(stats.requests))
    table.add_row("generations", str(stats.generations))
    table.add_row("prompt tokens", str(stats.prompt_tokens))
    table.add_row("completion tokens", str(stats.completion_tokens))
    table.add_row("file size", f"{stats.bytes / 1024:.1f} KiB")
    table.add_row("schema version", str(stats.schema_version))
    for model, count in stats.models.items():
        table.add_row(f"samples of {model}", str(count))
    out.print(table)


@app.command("reaggregate")
def reaggregate_command(
    source: Annotated[str, typer.Argument(help="A cache database with stored runs, or a pool file (.jsonl).")],
    aggregator: Annotated[list[str], typer.Option("--aggregator", "-a", help="Aggregator NAME or NAME:KEY=VALUE,... (repeatable).")] = ["majority"],
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="esc, esc:5, adaptive, adaptive:0.95 (repeatable).")] = None,
    run_id: Annotated[Optional[int], typer.Option("--run", help="Run id in the database (default: the latest).")] = None,
    cap: Annotated[Optional[int], typer.Option(min=1, help="Use at most this many samples per question.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Recompute answers and accuracy from stored candidates, without a single generation."""
    from manyminds.reaggregate import reaggregate

    rows = []
    for name in aggregator:
        for rule in [None, *(stop or [])]:
            rows.append(reaggregate(source, name, stop=rule, cap=cap, run=run_id))
    if as_json:
        for r in rows:
            print(json.dumps({"aggregator": r.aggregator, "stop": r.stop, "questions": r.questions,
                              "accuracy": r.accuracy, "mean_samples": r.mean_samples, "changed": r.changed}))
        return
    table = Table(title=f"re-aggregated {source}")
    for column in ("aggregator", "stop", "accuracy", "samples/question", "answers changed"):
        table.add_column(column, justify="left" if column in ("aggregator", "stop") else "right")
    for r in rows:
        table.add_row(r.aggregator, r.stop or "-", f"{r.accuracy:.1%} ({r.correct}/{r.questions})",
                      f"{r.mean_samples:.2f}", str(r.changed))
    out.print(table)


@cache_app.command("merge")
def cache_merge(
    target: Annotated[Path, typer.Argument(help="The cache file to add to (created if missing).")],
    sources: Annotated[list[Path], typer.Argument(help="Cache files to add (read only).")],
) -> None:
    """Add other caches' samples and runs to TARGET: replicas' caches, or a benchmark's shards run apart."""
    from manyminds.cache.merge import merge

    for source in sources:
        if not source.is_file():
            raise ManymindsError(f"{source}: no such cache file")
        added = merge(target, source)
        out.print(f"{source} -> {target}: {added.samples} samples ({added.requests} requests), "
                  f"{added.runs} runs, {added.results} results added")


@cache_app.command("runs")
def cache_runs(path: Annotated[str, typer.Argument(help="The cache file.")]) -> None:
    """The runs stored in a cache file (re-aggregate them with `manyminds reaggregate`)."""
    from manyminds.cache import GenerationCache

    target = Path(path).expanduser()
    if not target.is_file():
        raise ManymindsError(f"no cache file at {target}")
    with GenerationCache(target, read_only=True) as store:
        runs = store.runs.all()
    table = Table(title=f"runs in {target}")
    for column in ("id", "label", "strategy", "data", "results", "failed", "status"):
        table.add_column(column)
    for r in runs:
        meta = r["meta"]
        data = f"{meta['dataset']}" + (f" ({meta['split']})" if meta.get("split") else "") if meta.get("dataset") else "-"
        table.add_row(str(r["id"]), escape(r["label"]), r["strategy"], data, str(r["results"]), str(r["failed"]), r["status"])
    out.print(table)


def main() -> None:
    """Entry point: run the app, turning expected errors into one line and exit status 2."""
    # The command owns its process: move everything imported so far out of the garbage
    # collector's view, so full collections during large runs traverse only new objects.
    gc.freeze()
    cx = _click_exceptions()

    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError:  # `manyminds` alone: the help is the answer
        app(["--help"], standalone_mode=False)
        sys.exit(0)
    except cx.UsageError as error:  # an unknown option value, a missing argument
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        _fail(where + error.format_message())
    except cx.ClickException as error:
        _fail(error.format_message())
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except ManymindsError as error:
        _fail(str(error), error.exit_status)
    except ValidationError as error:
        _fail(one_line(error))
    except ValueError as error:  # e.g. an unknown --format value
        _fail(str(error))
    except RecursionError:
        _fail("the input is nested too deeply to read")
    except OSError as error:  # a file that cannot be read or written, a port in use, a full disk
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        _fail(f"{error.strerror or error}{where}", 1)
    except Exception as error:  # noqa: BLE001 - no traceback reaches a user unless asked for
        if os.environ.get("MANYMINDS_DEBUG"):
            raise
        _fail(f"unexpected {type(error).__name__}: {error} (set MANYMINDS_DEBUG=1 for the traceback; "
              "please report it)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> Any:
    """click's exceptions module: typer vendors click since 0.2x, older typers use plain click."""
    import importlib

    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("neither typer's vendored click nor click is importable")


def _fail(message: str, status: int = 2) -> None:
    message = redact(" ".join(message.split()).replace("Value error, ", ""))
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
