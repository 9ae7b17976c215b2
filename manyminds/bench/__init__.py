"""Benchmarks: the runner, scorers and reports (data sets are in `manyminds.datasets`)."""

from manyminds.datasets.arithmetic import LEVELS, arithmetic_tasks
from manyminds.bench.runner import BenchReport, QuestionRecord, RunReport, TooManyFailures, arun, run
from manyminds.bench.scoring import Score, Scorer, scorer_for

__all__ = ["LEVELS", "BenchReport", "QuestionRecord", "RunReport", "Score", "Scorer", "TooManyFailures",
           "arithmetic_tasks", "arun", "run", "scorer_for"]
