"""Embedded model: `manyminds run -n 8` on Local against raw llama-cpp-python.

Both are timed as whole processes (start, model load, 8 samples, exit) over
the same prompt and sampling parameters. Raw llama-cpp-python makes 8
sequential completions; manyminds decodes the 8 samples as one batch, so the
tokens differ and the fair figure is seconds per generated token (and the
whole-process time). Each repeat uses another seed (the same seed on both
sides), because a batch takes as long as its longest sample: one seed's
lengths say little, the sum over seeds is the same work in expectation. No
cache, so every sample is generated. Goal: within 10% of raw (was 1.12-1.20
before batched decoding).

    .venv/bin/python benchmarks/embedded.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _common import record

from manyminds.backends.base import sample_seed
from manyminds.backends.local import default_model_path
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

QUESTION = "What is 7 + 5?"
N = 8
MAX_TOKENS = 256
REPEATS = 5

RAW = r"""
import json, os, sys
from llama_cpp import Llama
spec = json.loads(sys.argv[1])
llm = Llama(model_path=spec["model"], n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
tokens = 0
for seed in spec["seeds"]:
    out = llm.create_chat_completion(messages=spec["messages"], temperature=spec["temperature"],
                                     top_p=1.0, max_tokens=spec["max_tokens"], seed=seed)
    tokens += out["usage"]["completion_tokens"]
print(tokens)
"""


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    strategy = SelfConsistency(n=N, max_tokens=MAX_TOKENS)
    spec = {
        "model": str(default_model_path()),
        "messages": [m.model_dump() for m in strategy.messages(Task(question=QUESTION))],
        "temperature": strategy.temperature,
        "max_tokens": MAX_TOKENS,
    }
    rows = []
    for seed in range(REPEATS):  # interleaved, so drift in machine load hits both alike
        spec["seeds"] = [sample_seed(seed, i) for i in range(N)]
        raw = [sys.executable, "-c", RAW, json.dumps(spec)]
        cli = [sys.executable, "-m", "manyminds.cli", "run", QUESTION, "-n", str(N), "--no-cache",
               "--max-tokens", str(MAX_TOKENS), "--seed", str(seed), "--json"]
        raw_s, raw_out = timed(raw)
        cli_s, cli_out = timed(cli)
        cli_tokens = json.loads(cli_out)["usage"]["completion_tokens"]
        rows.append({"raw_s": round(raw_s, 3), "manyminds_s": round(cli_s, 3),
                     "raw_tokens": int(raw_out), "manyminds_tokens": cli_tokens})
        print(rows[-1])
    raw_total = sum(r["raw_s"] for r in rows)
    cli_total = sum(r["manyminds_s"] for r in rows)
    raw_tokens = sum(r["raw_tokens"] for r in rows)
    cli_tokens = sum(r["manyminds_tokens"] for r in rows)
    per_token = (cli_total / cli_tokens) / (raw_total / raw_tokens)
    print(f"over {REPEATS} seeds: raw llama-cpp-python {raw_total:.2f}s ({raw_tokens} tokens), manyminds run "
          f"{cli_total:.2f}s ({cli_tokens} tokens), ratio {cli_total / raw_total:.3f}; per token {per_token:.3f}")
    print("written", record("embedded", {
        "question": QUESTION, "n": N, "max_tokens": MAX_TOKENS, "runs": rows,
        "raw_total_s": round(raw_total, 3), "manyminds_total_s": round(cli_total, 3),
        "raw_tokens": raw_tokens, "manyminds_tokens": cli_tokens,
        "ratio": round(cli_total / raw_total, 3), "seconds_per_token_ratio": round(per_token, 3),
        "goal": "ratio <= 1.10",
    }))


if __name__ == "__main__":
    main()
