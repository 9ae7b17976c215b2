"""What every paper script shares: its options, a run per data set, the report, a summary table.

Each script compares the methods of one published result on that paper's
data sets through `manyminds.bench.run`, so the same command resumes, and
writes `results/<script>/<data set>/report.md` (with its plots) and a
summary `results/<script>.md`. Any backend SPEC works; the figures committed
here come from the embedded SmolLM2-135M with a small `--limit`, so they are
low: the point is that the scripts run and the reports are right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository, for a checkout without an install

import manyminds as mm  # noqa: E402
from manyminds.backends import from_spec  # noqa: E402
from manyminds.bench.report import write_report  # noqa: E402


def options(description: str, *, limit: int = 10, n: int = 8, max_tokens: int = 192) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="local", help="a backend SPEC (local, openai:MODEL@URL, vllm:MODEL)")
    parser.add_argument("--limit", type=int, default=limit, help="questions per data set")
    parser.add_argument("-n", type=int, default=n, help="samples per question (the budget)")
    parser.add_argument("--max-tokens", type=int, default=max_tokens)
    parser.add_argument("--seed", type=int, default=0, help="which questions (a seeded sample) and the samples' seed")
    parser.add_argument("--cache", default=str(HERE / "results" / "papers.db"))
    parser.add_argument("--out", default=str(HERE / "results"))
    return parser


def compare(script: str, dataset: str, methods: dict, args, **run_options) -> list:
    """Run `methods` on `dataset`, write its report; returns the summary rows."""
    backend = run_options.pop("backend", None) or from_spec(args.backend)
    report = mm.bench.run(dataset, methods, backend=backend, cache=args.cache, limit=args.limit, seed=args.seed,
                          **run_options)
    folder = Path(args.out) / script / dataset
    write_report(report.runs, folder, title=f"{script}: {dataset} ({args.limit} questions, {args.backend})")
    rows = []
    for r in report.runs:
        low, high = r.interval()
        rows.append({"dataset": dataset, "method": r.label, "accuracy": r.accuracy, "low": low, "high": high,
                     "samples": r.usage.samples / max(1, r.questions), "tokens": r.usage.total_tokens / max(1, r.questions),
                     "failed": r.failures, "questions": r.questions})
        print(f"{dataset:12} {r.label:40} {100 * r.accuracy:5.1f}%  [{100 * low:.0f}-{100 * high:.0f}]  "
              f"{rows[-1]['samples']:.1f} samples/q", flush=True)
    return rows


def summary(script: str, title: str, rows: list, args, notes: str = "") -> Path:
    lines = [f"# {title}", "", f"`benchmarks/papers/{script}.py --backend {args.backend} --limit {args.limit} "
             f"-n {args.n}`; per data set reports (with plots) in `{script}/`.", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| data set | method | accuracy | 95% interval | samples/q | tokens/q | failed |",
              "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {100 * r['accuracy']:.1f}% ({r['questions']}) | "
                     f"{100 * r['low']:.0f}-{100 * r['high']:.0f}% | {r['samples']:.1f} | {r['tokens']:.0f} | "
                     f"{r['failed']} |")
    path = Path(args.out) / f"{script}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("written", path)
    return path
