"""Engines at full speed: vLLM through the framework against raw vLLM, prefix sharing, the embedded model.

1. vLLM framework efficiency: 64 questions x 8 samples through
   `SelfConsistency.solve_many` on the `VLLM` backend, against one raw
   `LLM.chat` call holding all of them (same prompts, same sampling
   settings). Goal: at least 90% of the raw tokens per second.
2. Prefix sharing: native n = k against k separate copies of the prompt in
   one `LLM.chat` call, k = 4 and 16, with a short prompt and with an 8-shot
   GSM8K chain-of-thought prompt (exemplars from ../shared/data/gsm8k/train.jsonl,
   or from a bundled copy where that is absent).
3. Embedded: self-consistency n = 8 on `Local` against sequential raw
   llama-cpp-python completions of the same prompt, tokens per second.

Runs on vLLM's CPU build here and unchanged on a GPU. Engine start-up is not
timed. Ratios are measured in one run.

    .venv/bin/python benchmarks/engines.py [--skip-vllm] [--skip-embedded]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from _common import record

from manyminds.types import Task

SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
QUESTIONS = [f"What is {a} + {b}?" for a in range(8) for b in range(8)]  # 64
MAX_TOKENS = 48


def eight_shot() -> str:
    """An 8-shot GSM8K chain-of-thought prompt prefix (the first eight training problems)."""
    if not SHARED_GSM8K.is_file():
        return "".join(f"Q: What is {k} + {k}?\nA: {k} plus {k} is {2 * k}. The answer is {2 * k}.\n\n"
                       for k in range(8)) * 6
    rows = [json.loads(line) for line in SHARED_GSM8K.read_text().splitlines()[:8]]
    shots = []
    for row in rows:
        reasoning, _, answer = row["answer"].partition("####")
        shots.append(f"Q: {row['question']}\nA: {reasoning.strip()} The answer is {answer.strip()}.\n\n")
    return "".join(shots)


def vllm_benchmarks() -> dict:
    from vllm import SamplingParams as EngineParams

    from manyminds.backends.vllm import VLLM
    from manyminds.strategies import SelfConsistency

    backend = VLLM(None, max_model_len=2048)
    llm = backend._engine()
    strategy = SelfConsistency(n=8, max_tokens=MAX_TOKENS, temperature=0.7, seed=0)
    tasks = [Task(question=q) for q in QUESTIONS]
    conversations = [[m.model_dump() for m in strategy.messages(t)] for t in tasks]
    params = EngineParams(n=8, temperature=0.7, top_p=1.0, max_tokens=MAX_TOKENS, seed=1)
    llm.chat(conversations[:2], params, use_tqdm=False)  # warm-up

    start = time.perf_counter()
    raw = llm.chat(conversations, params, use_tqdm=False)
    raw_s = time.perf_counter() - start
    raw_tokens = sum(len(c.token_ids) for o in raw for c in o.outputs)

    calls = backend.engine_calls
    start = time.perf_counter()
    results = strategy.solve_many(tasks, backend=backend, concurrency=len(tasks), progress=False)
    framework_s = time.perf_counter() - start
    framework_tokens = sum(r.usage.completion_tokens for r in results)
    efficiency = {
        "questions": len(tasks), "samples_per_question": 8, "max_tokens": MAX_TOKENS,
        "raw": {"seconds": round(raw_s, 2), "tokens": raw_tokens, "tokens_per_s": round(raw_tokens / raw_s, 1)},
        "framework": {"seconds": round(framework_s, 2), "tokens": framework_tokens,
                      "tokens_per_s": round(framework_tokens / framework_s, 1),
                      "engine_calls": backend.engine_calls - calls},
    }
    efficiency["ratio"] = round(efficiency["framework"]["tokens_per_s"] / efficiency["raw"]["tokens_per_s"], 3)
    print("efficiency", efficiency, flush=True)

    sharing = []
    for label, prefix in (("short", ""), ("8-shot GSM8K", eight_shot())):
        conversation = [{"role": "user", "content": prefix + "Q: What is 17 + 25?\nA:"}]
        for k in (4, 16):
            row = {"prompt": label, "k": k, "prompt_tokens": None}
            for mode in ("native n", "k prompts"):
                if mode == "native n":
                    batch, per = [conversation], EngineParams(n=k, temperature=0.7, max_tokens=MAX_TOKENS, seed=2)
                else:
                    batch = [conversation] * k
                    per = [EngineParams(n=1, temperature=0.7, max_tokens=MAX_TOKENS, seed=2 + j) for j in range(k)]
                llm.reset_prefix_cache()  # each mode starts without the other's cached prefix
                start = time.perf_counter()
                outs = llm.chat(batch, per, use_tqdm=False)
                seconds = time.perf_counter() - start
                tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
                row["prompt_tokens"] = len(outs[0].prompt_token_ids)
                row[mode] = {"seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}
            row["native_over_k_prompts"] = round(row["native n"]["tokens_per_s"] / row["k prompts"]["tokens_per_s"], 2)
            print("sharing", row, flush=True)
            sharing.append(row)
    backend.close()
    return {"vllm_efficiency": efficiency, "prefix_sharing": sharing}


RAW_EMBEDDED = r"""
import json, sys, time
from llama_cpp import Llama
spec = json.loads(sys.argv[1])
llama = Llama(model_path=spec["model"], n_ctx=2048, n_threads=spec["threads"], verbose=False)
rates = {}
for label, messages in spec["prompts"].items():
    llama.create_chat_completion(messages=messages, max_tokens=4)  # the prompt's KV cells, kept
    best = 0.0
    for repeat in range(spec["repeats"]):
        start, tokens = time.perf_counter(), 0
        for k in range(spec["n"]):
            reply = llama.create_chat_completion(messages=messages, temperature=spec["temperature"],
                                                 max_tokens=spec["max_tokens"], seed=100 * repeat + k)
            tokens += reply["usage"]["completion_tokens"]
        best = max(best, tokens / (time.perf_counter() - start))
    rates[label] = best
print(json.dumps(rates))
"""


def raw_embedded(model: Path, prompts: dict, strategy, repeats: int) -> dict[str, float]:
    """Sequential raw llama-cpp-python completions in a process of their own, best of `repeats`:
    a second llama.cpp context in this process would share the two cores with ours."""
    import subprocess

    spec = {"model": str(model), "threads": os.cpu_count(), "n": strategy.n, "repeats": repeats,
            "temperature": strategy.temperature, "max_tokens": MAX_TOKENS,
            "prompts": {label: [m.model_dump() for m in strategy.messages(task)] for label, task in prompts.items()}}
    out = subprocess.run([sys.executable, "-c", RAW_EMBEDDED, json.dumps(spec)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def embedded_benchmark(repeats: int = 3) -> dict:
    from manyminds.backends import Local
    from manyminds.backends.local import default_model_path
    from manyminds.backends.reencode import reencoded
    from manyminds.strategies import SelfConsistency

    strategy = SelfConsistency(n=8, max_tokens=MAX_TOKENS, temperature=0.7, seed=0)
    prompts = {label: Task(question=prefix + "Q: What is 17 + 25?\nA:")
               for label, prefix in (("short", ""), ("8-shot GSM8K", eight_shot()))}
    shipped = default_model_path()
    raw = raw_embedded(shipped, prompts, strategy, repeats)
    raw_q8 = raw_embedded(reencoded(shipped), prompts, strategy, repeats)
    local = Local(n_ctx=2048)
    # LangGraph's import, the graph's compilation and the batch context, outside the timings
    strategy.solve_many([Task(question="Say hello.")], backend=local, progress=False)
    rows = []
    for label, task in prompts.items():
        # the prompt's KV cells, kept; through the backend, so on its worker thread: llama.cpp
        # work driven from a second thread gets a second OpenMP team, which halves decode speed
        strategy.model_copy(update={"max_tokens": 2, "n": 1}).solve_many([task], backend=local, progress=False)
        rates = []
        for repeat in range(repeats):
            seeded = strategy.model_copy(update={"seed": repeat})
            start = time.perf_counter()
            (result,) = seeded.solve_many([task], backend=local, progress=False)
            rates.append(result.usage.completion_tokens / (time.perf_counter() - start))
        row = {"prompt": label, "raw_tokens_per_s": round(raw[label], 1),
               "raw_q8_0_tokens_per_s": round(raw_q8[label], 1),
               "local_tokens_per_s": round(max(rates), 1), "repeats": repeats}
        row["ratio"] = round(row["local_tokens_per_s"] / row["raw_tokens_per_s"], 2)
        row["ratio_same_weights"] = round(row["local_tokens_per_s"] / row["raw_q8_0_tokens_per_s"], 2)
        print("embedded", row, flush=True)
        rows.append(row)
    local.close()
    return {"embedded": rows, "embedded_weights": local.weights}


def main() -> None:
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    previous = Path(__file__).parent / "results" / "engines.json"
    data: dict = {}
    if previous.is_file():  # a partial rerun keeps the other sections' figures
        old = json.loads(previous.read_text())
        data.update({k: v for k, v in old.items() if k in ("vllm_efficiency", "prefix_sharing", "embedded")})
    if "--skip-vllm" not in sys.argv:
        data.update(vllm_benchmarks())
    if "--skip-embedded" not in sys.argv:
        data.update(embedded_benchmark())
    path = record("engines", data)
    print(f"wrote {path}")


if __name__ == "__main__":  # vLLM spawns worker processes, which import this module again
    asyncio.set_event_loop_policy(None)
    main()
