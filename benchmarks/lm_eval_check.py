"""lm-evaluation-harness against `manyminds serve`, unchanged: a generate task and a log-likelihood task.

1. Generation: lm-eval's `local-chat-completions` model sends a GSM8K slice (lm-eval's own
   `gsm8k-cot-zeroshot` configuration, included, reading the GSM8K test split shipped in the
   package: the hub is not reachable here) to `self-consistency-4`. lm-eval asks for greedy
   decoding (`do_sample: false`, temperature 0): the server samples the ensemble at its own
   temperature and says so, rather than reporting four copies of one draw as agreement.
2. Log-likelihood: lm-eval's `local-completions` model scores ARC-Easy's options (a local task
   over the shipped test split) through the pass-through (`model=smollm2`, not a strategy), which
   forwards `echo`/`logprobs` requests unchanged to the llama.cpp server (started with
   `--logits_all`, so prompt tokens get logprobs). The tokenizer is the embedded model's own
   (`backends.hf_model`, converted from the GGUF once and cached).

The upstream of both is the llama.cpp server running the embedded SmolLM2-135M. Prints lm-eval's
tables and writes benchmarks/results/lm_eval_check.json.

    make lm-eval        # installs lm-eval (torch is already there from the vLLM extra), then runs this
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port, record

ROOT = Path(__file__).resolve().parents[1]
LIMIT = int(os.environ.get("LM_EVAL_LIMIT", "10"))


def wait(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode})")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not start")


def tasks(folder: Path) -> None:
    import lm_eval

    gsm8k = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot-zeroshot.yaml"
    (folder / "gsm8k_manyminds.yaml").write_text(
        f"include: {gsm8k}\ntask: gsm8k_manyminds\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {ROOT / 'manyminds/datasets/data/gsm8k/test.jsonl'}\n"
        "training_split: null\nfewshot_split: null\n")
    arc = ROOT / "manyminds/datasets/data/arc/ARC-Easy-Test.jsonl"
    (folder / "arc_easy_manyminds.yaml").write_text(
        "task: arc_easy_manyminds\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {arc}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question.stem}}\\nAnswer:"\n'
        'doc_to_choice: "{{question.choices | map(attribute=\'text\') | list}}"\n'
        'doc_to_target: "{{(question.choices | map(attribute=\'label\') | list).index(answerKey)}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")


def lm_eval(*args: str) -> dict:
    out = Path(tempfile.mkdtemp()) / "out"
    command = [sys.executable, "-m", "lm_eval", *args, "--limit", str(LIMIT), "--output_path", str(out)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                                              "OPENAI_API_KEY": "unused", "TOKENIZERS_PARALLELISM": "false"})
    found = sorted(out.rglob("results_*.json"))
    return json.loads(found[-1].read_text())["results"] if found else {}


def main() -> None:
    from manyminds.backends.hf_model import hf_model_from_gguf
    from manyminds.backends.reencode import reencoded
    from manyminds.backends.weights import default_model_path

    llama_port, server_port = free_port(), free_port()
    llama = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(reencoded(default_model_path())),
                              "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(llama_port),
                              "--n_ctx", "2048", "--logits_all", "True"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen([sys.executable, "-m", "manyminds.cli", "serve", "--backend",
                               f"openai:smollm2@http://127.0.0.1:{llama_port}/v1", "--port", str(server_port),
                               "--upstream-deadline", "120", "--upstream-timeout", "120"],
                              env={**os.environ, "OPENAI_API_KEY": "unused"})
    base = f"http://127.0.0.1:{server_port}/v1"
    try:
        wait(f"http://127.0.0.1:{llama_port}/v1", llama, "llama.cpp server")
        wait(base, server, "manyminds serve")
        folder = Path(tempfile.mkdtemp())
        tasks(folder)
        tokenizer = hf_model_from_gguf(default_model_path())
        generated = lm_eval("--model", "local-chat-completions", "--model_args",
                            f"model=self-consistency-4,base_url={base}/chat/completions,num_concurrent=1,max_retries=1",
                            "--tasks", "gsm8k_manyminds", "--include_path", str(folder), "--apply_chat_template")
        scored = lm_eval("--model", "local-completions", "--model_args",
                         f"model=smollm2,base_url={base}/completions,tokenizer={tokenizer},num_concurrent=1,"
                         "max_retries=1,tokenized_requests=False",
                         "--tasks", "arc_easy_manyminds", "--include_path", str(folder))
        print("written", record("lm_eval_check", {"limit": LIMIT, "generate": generated, "loglikelihood": scored}))
    finally:
        for process in (server, llama):
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
