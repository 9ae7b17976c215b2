"""Reports from recorded benchmark runs: tables, intervals, curves and calibration, as Markdown, JSON and PNG.

Everything is computed from what the runs stored, without a generation:

- per run: accuracy with a 95% bootstrap interval over questions, samples
  and tokens per question, cost per question at a price per token, failures;
- accuracy against samples per question for every voting run, by
  subsampling its stored samples as the self-consistency papers do: for
  each k, many random k-subsets of each question's samples are put to a
  majority vote, so one run at n = 40 gives the whole curve; the band is a
  bootstrap interval over questions;
- accuracy against tokens per question across runs (and models), which is
  the equal-compute comparison: many samples of a small model against one of
  a large one, in tokens or, given prices, in money;
- calibration of the ensemble's confidence (the winner's vote share):
  expected calibration error over 10 bins and a reliability diagram.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from manyminds.answers import is_correct, normalise_gold, same_answer
from manyminds.bench.runner import QuestionRecord, RunReport, bootstrap_interval
from manyminds.bench.scoring import Score
from manyminds.bench.stats import coverage, equal_compute, paired, comparable, single_sample
from manyminds.cache import GenerationCache
from manyminds.errors import ConfigError
from manyminds.types import ballots


def load_runs(path: str | Path, runs: Sequence[int] | None = None) -> list[RunReport]:
    """The benchmark runs stored in a cache file (all, or the ids given), read-only."""
    target = Path(path).expanduser()
    if not target.is_file():
        raise ConfigError(f"no cache file at {target}")
    out = []
    with GenerationCache(target, read_only=True) as store:
        known = {r["id"]: r for r in store.runs.all()}
        wanted = list(runs) if runs else [i for i, r in known.items() if r["results"]]
        for run in wanted:
            if run not in known:
                raise ConfigError(f"{target} has no run {run}; its runs: {', '.join(map(str, known)) or 'none'}")
            info = store.runs.info(run)
            records = [QuestionRecord.from_row(row) for row in store.runs.rows(run) if row["task"] is not None]
            if records and all(r.score is None and r.error is None for r in records):
                records = [_scored_by_answer(r) for r in records]  # a run stored before scores were
            out.append(RunReport(label=info["label"], run_id=run, strategy=info["strategy"], params=info["params"],
                                 meta=info["meta"], records=records))
    if not out:
        raise ConfigError(f"{target} holds no stored run")
    return out


def _scored_by_answer(record: QuestionRecord) -> QuestionRecord:
    correct = is_correct(record.result) if record.result is not None else None
    if correct is None:
        return record
    return record.model_copy(update={"score": Score(value=float(correct))})


# -- the numbers -------------------------------------------------------------------


def samples_curve(run: RunReport, *, repeats: int = 32, seed: int = 0,
                  ks: Sequence[int] | None = None) -> list[dict[str, float | int]] | None:
    """Accuracy of a majority vote over k of each question's stored samples, for k up to the
    fewest any question has; None for runs that are not votes over gold-scored answers.

    For each k, `repeats` random k-subsets of every question's samples are voted on (ties
    to the answer whose first vote has the lowest sample index, the majority rule), and the
    question's accuracy at k is the share of right votes; the interval is a bootstrap over
    questions. Vectorised over questions and subsets: a 1,000-question run takes a fraction
    of a second.
    """
    import numpy as np


    rows = [r.result for r in run.records if r.result is not None and r.result.task.gold is not None]
    if not rows or run.meta.get("scorer", "answer") != "answer" or not any(r.tally for r in rows):
        return None
    pools = []
    for result in rows:
        sampled = sorted(ballots(result.candidates), key=lambda c: c.index)
        gold = normalise_gold(result.task)
        keys = list(dict.fromkeys(c.answer for c in sampled if c.answer is not None))
        position = {k: i for i, k in enumerate(keys)}
        pools.append(([position.get(c.answer, -1) if c.answer is not None else -1 for c in sampled],
                      [same_answer(result.task, k, gold) for k in keys]))
    n = min(len(ids) for ids, _ in pools)
    if n < 2:
        return None
    if ks is None:
        ks = sorted({k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40, 64, 128) if k <= n} | {n})
    else:
        ks = sorted({k for k in ks if 1 <= k <= n})
        if not ks:
            return None
    m = max(1, max(len(right) for _, right in pools))
    ids = np.array([p[0][:n] for p in pools])  # (Q, n): each question's first n samples
    right = np.zeros((len(pools), m + 1), dtype=bool)  # column m: abstention, never right
    for q, (_, r) in enumerate(pools):
        right[q, : len(r)] = r
    ids = np.where(ids < 0, m, ids)
    rng = np.random.default_rng(seed)
    per_question = np.zeros((len(pools), len(ks)))
    answers = np.arange(m)
    for start in range(0, len(pools), 128):  # blocks of questions bound the memory
        block = ids[start:start + 128]
        order = np.argsort(rng.random((len(block), repeats, n)), axis=2)  # a random order per subset
        for j, k in enumerate(ks):
            chosen = np.sort(order[:, :, :k], axis=2)  # (B, R, k) sample indices, in index order
            votes = np.take_along_axis(block[:, None, :].repeat(repeats, axis=1), chosen, axis=2)
            hit = votes[..., None] == answers  # (B, R, k, m)
            counts = hit.sum(axis=2)
            first = np.where(hit, chosen[..., None], n).min(axis=2)
            winner = (counts * (n + 1) - first).argmax(axis=2)  # most votes, then the earliest first vote
            winner = np.where(counts.max(axis=2) == 0, m, winner)
            per_question[start:start + len(block), j] = np.take_along_axis(
                right[start:start + len(block)], winner, axis=1).mean(axis=1)
    out = []
    for j, k in enumerate(ks):
        low, high = bootstrap_interval(per_question[:, j], resamples=1000)
        out.append({"k": int(k), "accuracy": float(per_question[:, j].mean()), "low": low, "high": high})
    return out


def calibration(run: RunReport, bins: int = 10) -> dict[str, Any] | None:
    """Expected calibration error of the result confidences, and the reliability table."""
    pairs = [(r.result.confidence, r.score.value) for r in run.records
             if r.result is not None and r.score is not None and r.result.tally]
    if len(pairs) < 2:
        return None
    table = []
    ece = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(c, v) for c, v in pairs if (low <= c < high) or (b == bins - 1 and c == 1.0)]
        if not inside:
            continue
        confidence = sum(c for c, _ in inside) / len(inside)
        accuracy = sum(v for _, v in inside) / len(inside)
        ece += len(inside) / len(pairs) * abs(accuracy - confidence)
        table.append({"low": low, "high": high, "count": len(inside), "confidence": confidence, "accuracy": accuracy})
    return {"ece": ece, "bins": table, "questions": len(pairs)}


COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def selective(run: RunReport) -> dict[str, Any] | None:
    """Abstention and the risk-coverage trade: the share of questions answered (a `selective` vote
    abstains), the accuracy on those, and the accuracy when only the most confident share of questions
    is answered (by the result's confidence; abstentions count as least confident)."""
    pairs = [(r.result.confidence if r.result.answer is not None else -1.0, r.score.value, r.result.answer is not None)
             for r in run.records if r.result is not None and r.score is not None and r.result.tally]
    if len(pairs) < 2:
        return None
    answered = [v for _, v, a in pairs if a]
    ranked = sorted(pairs, key=lambda p: -p[0])
    curve = []
    for share in COVERAGES:
        top = ranked[:max(1, round(share * len(ranked)))]
        curve.append({"coverage": share, "accuracy": sum(v for _, v, _ in top) / len(top)})
    return {"answered": len(answered) / len(pairs),
            "selective_accuracy": sum(answered) / len(answered) if answered else None, "risk_coverage": curve}


class RunSummary(BaseModel):
    run: int | None
    label: str
    strategy: str
    dataset: str | None
    split: str | None
    model: str | None
    questions: int
    scored: int
    failures: int
    accuracy: float
    interval: tuple[float, float]
    samples_per_question: float
    tokens_per_question: float
    prompt_tokens_per_question: float = 0.0
    cost_per_question: float | None = None
    curve: list[dict[str, float | int]] | None = None
    """maj@k: a majority vote over k of each question's samples."""
    coverage: list[dict[str, float | int]] | None = None
    """pass@k (unbiased estimator): right if any of k samples is; the ceiling a better aggregator or
    verifier could reach with k samples."""
    single_sample: dict[str, float | int] | None = None
    """pass@1: the mean accuracy of all stored samples, with its interval (the honest one-sample baseline)."""
    oracle: bool = False
    """The run was decided with a verifier that read the gold answer or the scorer's tests."""
    calibration: dict[str, Any] | None = None
    selective: dict[str, Any] | None = None
    """Share answered, accuracy when answering, and accuracy at each coverage (most confident first)."""
    params: dict[str, Any] = Field(default_factory=dict)


def model_label(meta: dict[str, Any]) -> str | None:
    """The model as it ran: the embedded GGUF file is re-encoded (Q8_0) unless told not to, and the
    backend identity says so; a report names the weights that produced the samples."""
    model = meta.get("model")
    weights = (meta.get("backend") or {}).get("weights") if isinstance(meta.get("backend"), dict) else None
    if model and weights:
        return f"{model} as {str(weights).upper()}"
    return model


def summarise(run: RunReport, prices: dict[str, float] | None = None) -> RunSummary:
    """The run's figures; `prices` maps a model (or '*') to a price per token."""
    scored = len(run.scored) or 1
    usage = run.usage
    model = run.meta.get("model")
    price = None if not prices else prices.get(str(model), prices.get("*"))
    return RunSummary(
        run=run.run_id, label=run.label, strategy=run.strategy, dataset=run.meta.get("dataset"),
        split=run.meta.get("split"), model=model_label(run.meta), questions=run.questions, scored=len(run.scored),
        failures=run.failures, accuracy=run.accuracy, interval=run.interval(),
        samples_per_question=usage.samples / scored, tokens_per_question=usage.total_tokens / scored,
        prompt_tokens_per_question=usage.prompt_tokens / scored,
        cost_per_question=None if price is None else usage.total_tokens / scored * price,
        curve=samples_curve(run), coverage=coverage(run), single_sample=single_sample(run),
        oracle=bool(run.meta.get("oracle")), calibration=calibration(run), selective=selective(run),
        params=run.params)


# -- writing -------------------------------------------------------------------------


def write_report(runs: Sequence[RunReport], out: str | Path, *, prices: dict[str, float] | None = None,
                 title: str = "manyminds benchmark report", viewer: str | None = None) -> dict[str, Path]:
    """report.md, report.json and the plots in `out`; returns what was written. `viewer`: the
    command that browses these runs question by question, named under the title."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"report folder {folder} is a file: give --out a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the report folder {folder}: {error.strerror or error}") from None
    for name, price in (prices or {}).items():
        if not (price >= 0 and price != float("inf")):
            raise ConfigError(f"price {price!r} for {name!r}: a price is a finite number >= 0 per token")
    summaries = [summarise(r, prices) for r in runs]
    comparisons = {"paired": [c for a, b in comparable(runs) if (c := paired(a, b)) is not None],
                   "equal_compute": equal_compute(runs, _majority_at)}
    written = {"json": folder / "report.json", "comparisons": folder / "comparisons.json",
               "markdown": folder / "report.md"}
    written["json"].write_text(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2) + "\n")
    written["comparisons"].write_text(json.dumps(comparisons, indent=2) + "\n")
    plots = _plots(summaries, folder)
    written.update(plots)
    written["markdown"].write_text(_markdown(summaries, plots, title, comparisons, viewer))
    return written


def _majority_at(run: RunReport, k: int) -> dict[str, float | int] | None:
    points = samples_curve(run, ks=[k])
    return points[0] if points else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _markdown(summaries: list[RunSummary], plots: dict[str, Path], title: str,
              comparisons: dict[str, list[dict[str, Any]]] | None = None, viewer: str | None = None) -> str:
    lines = [f"# {title}", ""]
    if viewer:
        lines += [f"Every question's candidates, votes, verdicts and decision: `{viewer}` (a local web page).", ""]
    priced = any(s.cost_per_question is not None for s in summaries)
    head = "| run | method | data | model | accuracy | 95% interval | samples/q | tokens/q |"
    rule = "|---:|---|---|---|---:|---|---:|---:|"
    if priced:
        head, rule = head + " cost/q |", rule + "---:|"
    lines += [head + " failed |", rule + "---:|"]
    for s in summaries:
        data = f"{s.dataset}" + (f" ({s.split})" if s.split else "")
        label = s.label if not s.oracle or "[oracle]" in s.label else f"{s.label} [oracle]"
        row = (f"| {s.run} | {label} | {data} | {s.model or '-'} | {_pct(s.accuracy)} ({s.scored}) | "
               f"{_pct(s.interval[0])}-{_pct(s.interval[1])} | {s.samples_per_question:.3g} | "
               f"{s.tokens_per_question:.0f} |")
        if priced:
            row += f" {s.cost_per_question:.3g} |" if s.cost_per_question is not None else " - |"
        lines.append(row + f" {s.failures} |")
    if any(s.oracle for s in summaries):
        lines += ["", "Runs marked [oracle] were decided by a verifier that read the gold answer or the "
                  "scorer's tests: an upper bound, not an accuracy a user could get."]
    singles = [s for s in summaries if s.single_sample and s.samples_per_question > 1]
    if singles:
        lines += ["", "## One sample", "", "pass@1: the mean accuracy of every stored sample (not sample 0 alone), "
                  "with a bootstrap interval over questions.", "", "| run | method | pass@1 | 95% interval | samples |",
                  "|---:|---|---:|---|---:|"]
        for s in singles:
            p = s.single_sample or {}
            lines.append(f"| {s.run} | {s.label} | {_pct(p['pass'])} | {_pct(p['low'])}-{_pct(p['high'])} | "
                         f"{p['samples']} |")
    paired_rows = (comparisons or {}).get("paired", [])
    if paired_rows:
        lines += ["", "## Paired comparisons", "",
                  "Each pair of runs on the same questions: B - A with a paired bootstrap 95% interval over "
                  "questions, and McNemar's exact p over the questions exactly one of them got right.", "",
                  "| A | B | questions | A | B | B - A | 95% interval | only A | only B | McNemar p |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for c in paired_rows:
            lines.append(f"| {c['a']} | {c['b']} | {c['questions']} | {_pct(c['accuracy_a'])} | "
                         f"{_pct(c['accuracy_b'])} | {100 * c['difference']:+.1f} | {100 * c['low']:+.1f} to "
                         f"{100 * c['high']:+.1f} | {c['only_a']} | {c['only_b']} | {c['mcnemar_p']:.3g} |")
    equal = (comparisons or {}).get("equal_compute", [])
    if equal:
        lines += ["", "## Equal compute", "",
                  "A voting run's majority over k of its samples, k chosen so that k samples cost about the tokens "
                  "per question the other method spent.", "",
                  "| voting | against | tokens/q | k | voting at k | 95% interval | against |",
                  "|---|---|---:|---:|---:|---|---:|"]
        for e in equal:
            lines.append(f"| {e['voting']} | {e['against']} | {e['tokens_per_question']:.0f} | {e['k']} | "
                         f"{_pct(e['voting_accuracy'])} | {_pct(e['low'])}-{_pct(e['high'])} | "
                         f"{_pct(e['against_accuracy'])} |")
    covered = [s for s in summaries if s.coverage and len(s.coverage) > 1]
    if covered:
        lines += ["", "## pass@k (coverage)", "", "Right if any of k samples is (the unbiased estimator of Chen et "
                  "al. 2021): the gap to the majority vote is what a better aggregator or verifier could win.", ""]
        for s in covered:
            lines.append(f"- {s.label} (run {s.run}): " + ", ".join(
                f"k={p['k']}: {_pct(p['pass'])}" for p in s.coverage or []))
    curves = [s for s in summaries if s.curve]
    if curves:
        lines += ["", "## Accuracy against samples per question", "",
                  "A majority vote over k of each question's stored samples, averaged over 32 random k-subsets "
                  "per question; the interval is a bootstrap over questions.", ""]
        for s in curves:
            lines.append(f"- {s.label} (run {s.run}): " + ", ".join(
                f"k={p['k']}: {_pct(p['accuracy'])}" for p in s.curve or []))
    calibrated = [s for s in summaries if s.calibration]
    if calibrated:
        lines += ["", "## Calibration of the vote share", "", "| run | method | ECE (10 bins) | questions |",
                  "|---:|---|---:|---:|"]
        for s in calibrated:
            calibration = s.calibration or {}
            lines.append(f"| {s.run} | {s.label} | {calibration['ece']:.3f} | {calibration['questions']} |")
    chosen = [s for s in summaries if s.selective]
    if chosen:
        lines += ["", "## Selective answering: accuracy against coverage", "",
                  "Answered: the share of questions given an answer (a `selective` vote abstains). Then the accuracy "
                  "when only the most confident share of questions is answered (by vote share; abstentions last).",
                  "", "| run | method | answered | accuracy when answering | "
                  + " | ".join(f"at {round(100 * c)}%" for c in COVERAGES) + " |",
                  "|---:|---|---:|---:|" + "---:|" * len(COVERAGES)]
        for s in chosen:
            sel = s.selective or {}
            at = " | ".join(_pct(p["accuracy"]) for p in sel["risk_coverage"])
            answered_accuracy = "-" if sel["selective_accuracy"] is None else _pct(sel["selective_accuracy"])
            lines.append(f"| {s.run} | {s.label} | {_pct(sel['answered'])} | {answered_accuracy} | {at} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({path.name})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def _plots(summaries: list[RunSummary], folder: Path) -> dict[str, Path]:
    # Figure objects, not pyplot: no GUI backend is chosen, no global state is kept, and the
    # import costs half as much (this runs inside a command people wait on).
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    written: dict[str, Path] = {}

    def save(fig: Any, ax: Any, name: str, title: str, xlabel: str, ylabel: str, legend: int = 7) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend)
        fig.tight_layout()
        written[name] = folder / f"{name}.png"
        fig.savefig(written[name], dpi=120)

    curves = [s for s in summaries if s.curve]
    if curves:
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        for s in curves:
            curve = s.curve or []
            ks = [p["k"] for p in curve]
            line, = ax.plot(ks, [100 * p["accuracy"] for p in curve], marker="o",
                            label=f"{s.label} · {s.model or '?'}")
            ax.fill_between(ks, [100 * p["low"] for p in curve], [100 * p["high"] for p in curve],
                            color=line.get_color(), alpha=0.15)
            if s.coverage:
                shown = [p for p in s.coverage if p["k"] in ks]
                ax.plot([p["k"] for p in shown], [100 * p["pass"] for p in shown], linestyle="--",
                        color=line.get_color(), alpha=0.8, label=f"{s.label}: pass@k (coverage)")
        ax.set_xscale("log", base=2)
        ticks = sorted({p["k"] for s in curves for p in s.curve or []})
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.minorticks_off()
        sets = ", ".join(dict.fromkeys(str(s.dataset) for s in curves if s.dataset)) or "stored runs"
        save(fig, ax, "accuracy_vs_samples", f"Accuracy against samples: {sets}",
             "samples per question (k; solid: majority of k, dashed: any of k right)", "accuracy (%)", legend=7)
    if summaries:
        priced = all(s.cost_per_question is not None for s in summaries)
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        models = sorted({str(s.model) for s in summaries})
        markers = "osD^vP*X"
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, s in enumerate(summaries):
            colour = colours[i % len(colours)]
            x = s.cost_per_question if priced else s.tokens_per_question
            if x is None:  # a run whose model has no price: nothing to place on the cost axis
                continue
            err = [[100 * (s.accuracy - s.interval[0])], [100 * (s.interval[1] - s.accuracy)]]
            ax.errorbar([x], [100 * s.accuracy], yerr=err, fmt=markers[models.index(str(s.model)) % len(markers)],
                        color=colour, capsize=3, label=f"{s.label} · {s.model or '?'}")
            if s.curve and s.samples_per_question:  # the vote over k of its samples, at what k samples cost:
                # the prompt as the run paid for it, plus k samples' completions
                prompt = s.prompt_tokens_per_question
                per_sample = (s.tokens_per_question - prompt) / s.samples_per_question
                scale = x / s.tokens_per_question if s.tokens_per_question else 0.0
                ax.plot([(prompt + p["k"] * per_sample) * scale for p in s.curve],
                        [100 * p["accuracy"] for p in s.curve],
                        linestyle="--", color=colour, alpha=0.6, label=f"{s.label}: vote over k of its samples")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        save(fig, ax, "accuracy_vs_compute", "Accuracy against compute",
             "cost per question" if priced else "tokens per question (prompt + completion)",
             "accuracy (%), 95% interval")
    calibrated = [s for s in summaries if s.calibration]
    if calibrated:
        fig = Figure(figsize=(5.2, 5.0))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        for s in calibrated:
            calibration = s.calibration or {}
            bins = calibration["bins"]
            line, = ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins],
                            label=f"{s.label} (ECE {calibration['ece']:.3f})")
            ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color=line.get_color(),
                       s=[12 + 200 * b["count"] / calibration["questions"] for b in bins])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        save(fig, ax, "calibration", "Reliability of the ensemble's confidence",
             "confidence (winner's vote share), binned; marker area: questions", "accuracy in the bin")
    return written
