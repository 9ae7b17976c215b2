"""Helpers shared by the benchmark scripts: timing and recording results."""

from __future__ import annotations

import json
import platform
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def record(name: str, data: dict) -> Path:
    """Write results/<name>.json with the machine and the time of the run."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def best_of(repeats: int, run) -> float:
    """The fastest of `repeats` timings of `run()` (seconds): the least disturbed one."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def paired(a: "Any", b: "Any", resamples: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over questions (two arrays of scores on the same questions) with a seeded
    percentile bootstrap 95% interval."""
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
