"""Write docs/strategies/<name>.md, one page per registered strategy, from the code itself.

Each page: the strategy's docstring, its row of docs/methods.md (what it follows, the paper's setup,
our defaults, the differences), when to use it, its cost in calls and samples measured on the
Scripted backend at n = 4, a runnable example (executed by the tests), and its settings with their
descriptions. `make docs` runs this; `tests/test_docs.py` fails when a page is out of date.

    .venv/bin/python docs/_tools/strategy_pages.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent

WHEN = {
    "self-consistency": "The default: any question with a short answer that can be compared (numbers, choices, yes/no, "
                        "math). Add a stopping rule (`stop=\"esc\"`) to pay only for the samples the vote needs.",
    "best-of-n": "When a verifier can check an answer (unit tests, a math checker, a reward model): the best-scored "
                 "sample wins. Watch the verifier's false positives.",
    "verified-vote": "When a verifier is informative but noisy: votes weighted by its scores.",
    "verifier-resampling": "When a verifier is cheap and strict (unit tests): sample until one passes, abstain "
                           "when none does within the budget.",
    "cascade": "When most questions are easy: a cheap method first, a stronger one only where it disagrees.",
    "choice-shuffle": "Multiple choice where the model favours positions: each sample sees the options shuffled.",
    "deepconf-online": "Long chains of thought with token log probabilities: paths that lose confidence stop early "
                       "and do not vote.",
    "div-se": "When one prompt's errors are correlated: diverse approaches and personas, one prompt each.",
    "idiv-se": "DIV-SE at one call per sample: all approaches inside one prompt.",
    "exemplar-resampling": "Few-shot prompting where the choice of exemplars matters: each sample sees its own.",
    "template-variation": "When the wording of the prompt sways the answer: each sample gets another template.",
    "moa": "Open-ended answers from several models (or settings): proposers, then a synthesis.",
    "self-moa": "Open-ended answers from one strong model: its own samples, synthesised.",
    "self-moa-seq": "Self-MoA with more samples than fit in one prompt: synthesised in a sliding window.",
    "ranked-vote": "Free text where judges can rank but answers cannot be compared as keys.",
    "run-off-vote": "Close votes: a judge decides between the two leading answers.",
    "self-agreement": "When the model can read its own samples: one more call picks the answer most agree on.",
    "usc": "Free-form answers with no answer key: the model picks the most consistent response.",
    "self-refine-vote": "When a draft improves with one round of self-critique before voting.",
    "temperature-mix": "To trade diversity for accuracy: samples shared over several temperatures.",
}


def reply_source() -> str:
    return '''def reply(messages, params, index):
    """A stand-in model: proposals, judgements and answers by what is asked (replace the backend
    with mm.backends.Local() to run the embedded model, or OpenAICompatible for a server)."""
    text = messages[-1].content
    if "Do not solve it" in text:
        return "Approach 1: count on\\nApproach 2: add tens\\nPersona 1: a teacher"
    if "Is the proposed answer correct?" in text:  # a P(True) judge
        return "True" if "The answer is 12." in text else "False"
    if "Ranking" in text or "rank" in text.lower():
        return "Ranking: 1 > 2 > 3"
    if "most consistent" in text or "Which answer" in text:
        return "The most consistent answer is 12 (Response 1)."
    return f"7 + 5 = 12. The answer is {13 if index % 4 == 3 else 12}."'''


def example(name: str, needs_verifier: bool) -> str:
    verifier = ""
    if needs_verifier:
        verifier = (', verifier="p-true",\n                          '
                    'verifier_options=VerifierOptions(backend=backend)')
    imports = "import manyminds as mm\nfrom manyminds.backends import Scripted\n"
    if needs_verifier:
        imports += "from manyminds.verifiers.base import VerifierOptions\n"
    return (f"```python\n{imports}\n{reply_source()}\n\n\nbackend = Scripted(reply)\n"
            f"strategy = mm.strategies.make(\"{name}\", 4{verifier})\n"
            f"result = strategy.solve(\"What is 7 + 5?\", backend=backend)\n"
            f"print(result.answer, result.confidence, result.usage.calls, result.usage.samples)\n"
            f"assert result.answer == \"12\"\n```\n")


def measured_cost(name: str, needs_verifier: bool) -> tuple[int, int, int]:
    """Model calls, samples and judge calls one question costs at n = 4 (Scripted backend)."""
    import manyminds as mm
    from manyminds.backends import Scripted
    from manyminds.verifiers.base import VerifierOptions

    namespace: dict = {}
    exec(reply_source(), namespace)
    backend = Scripted(namespace["reply"])
    judge = Scripted(namespace["reply"])
    options = {"verifier": "p-true", "verifier_options": VerifierOptions(backend=judge)} if needs_verifier else {}
    result = mm.strategies.make(name, 4, **options).solve("What is 7 + 5?", backend=backend)
    return result.usage.calls, result.usage.samples, judge.calls


def methods_row(name: str) -> list[str] | None:
    for line in (DOCS / "methods.md").read_text().splitlines():
        if line.startswith("| `") and f"`{name}`" in line.split("|")[1]:
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    return None


def settings(cls: type) -> list[str]:
    rows = []
    for field, info in cls.model_fields.items():
        if info.exclude:
            continue
        default = info.default if info.default_factory is None else info.default_factory()
        described = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{field}` | `{default!r}` | {described} |")
    return rows


def page(name: str) -> str:
    from manyminds.strategies import by_name

    cls = by_name(name)
    doc = (cls.__doc__ or "").strip()
    lines = [f"# `{name}`", "", doc or "(no description)", ""]
    row = methods_row(name)
    if row is not None and len(row) >= 5:
        lines += ["## The paper and ours", "", "| follows | the paper's setup | ours by default | differences |",
                  "|---|---|---|---|", f"| {row[1]} | {row[2]} | {row[3]} | {row[4]} |", ""]
    if name in WHEN:
        lines += ["## When to use it", "", WHEN[name], ""]
    calls, samples, judged = measured_cost(name, cls.needs_verifier)
    cost = f"One question at `n = 4` makes **{calls}** model calls drawing **{samples}** samples"
    cost += f", and **{judged}** verifier calls." if cls.needs_verifier else "."
    lines += ["## Cost", "", cost + " (Measured on the Scripted backend when this page was written; tokens "
              "scale with the samples and, for syntheses and selections, with the responses quoted.)", ""]
    lines += ["## Run it", "", "On the Scripted test backend (the block is executed by the tests):", "",
              example(name, cls.needs_verifier),
              "On the embedded model, `backend = mm.backends.Local()`; from the command line, "
              f"`manyminds run \"What is 7 + 5?\" -s {name} -n 4`" + (" --verifier p-true" if cls.needs_verifier else "")
              + ".", ""]
    table = settings(cls)
    if table:
        lines += ["## Settings", "", "| setting | default | what it does |", "|---|---|---|", *table, ""]
    return "\n".join(lines)


INDEX = """# Strategies

Every strategy is a frozen configuration built with `mm.strategies.make(name, n, **settings)` (the
same call the CLI and the server make), run by a `Session`, and compiled to a LangGraph graph you
can embed. Each page says what the method's paper does, what ours does by default and how to get
the paper's setting, when to use it, what one question costs, and runs it.

| strategy | in one line |
|---|---|
"""


def index() -> str:
    from manyminds.strategies import by_name, names

    rows = []
    for name in names():
        line = (by_name(name).__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        rows.append(f"| [`{name}`]({name}.md) | {line} |")
    return INDEX + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if a page is out of date")
    args = parser.parse_args()
    from manyminds.strategies import names

    folder = DOCS / "strategies"
    folder.mkdir(exist_ok=True)
    stale = []
    for name, target, text in [("index", folder / "index.md", index()),
                               *((n, folder / f"{n}.md", page(n)) for n in names())]:
        if args.check:
            if not target.is_file() or target.read_text() != text:
                stale.append(name)
        else:
            target.write_text(text)
    if stale:
        sys.exit(f"out of date: {', '.join(stale)} (run docs/_tools/strategy_pages.py)")


if __name__ == "__main__":
    main()
