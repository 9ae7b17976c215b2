"""Benchmark data, scoring and reports."""

from manyminds.bench.arithmetic import LEVELS, arithmetic_tasks
from manyminds.bench.runner import BenchReport, MethodScore, run_methods, score

__all__ = ["LEVELS", "BenchReport", "MethodScore", "arithmetic_tasks", "run_methods", "score"]
