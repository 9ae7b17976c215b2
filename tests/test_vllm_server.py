"""vLLM's OpenAI-compatible server for real, started on 127.0.0.1 and driven through OpenAICompatible."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: `make vllm` installs the CPU build")

from manyminds.backends.openai_compat import OpenAICompatible  # noqa: E402
from manyminds.backends.vllm import cpu_memory_fraction  # noqa: E402
from manyminds.strategies import SelfConsistency  # noqa: E402
from manyminds.types import Message, SamplingParams  # noqa: E402
from tests.conftest import free_port, stop_server, wait_for_server  # noqa: E402

pytestmark = pytest.mark.integration

MSGS = [Message(role="user", content="What is 2 + 3? Reply with just the number.")]
PARAMS = SamplingParams(temperature=0.9, max_tokens=16, seed=7)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from manyminds.backends.hf_model import hf_model_from_gguf

    model = hf_model_from_gguf()
    port = free_port()
    log_path = Path(tmp_path_factory.mktemp("vllm")) / "server.log"
    log = log_path.open("w")
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
         "--max-model-len", "1024", "--gpu-memory-utilization", str(cpu_memory_fraction(int(2.2 * 2**30))),
         "--enable-prefix-caching"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_server(process, url, "vLLM's server", log_path, timeout=420)
        yield url
    finally:
        stop_server(process, grace=30)
        log.close()


def run(coro):
    return asyncio.run(coro)


def test_native_n_and_usage(vllm_server):
    backend = OpenAICompatible(model="smollm2", base_url=vllm_server)
    out = run(backend.generate(MSGS, PARAMS, 4))
    assert backend._native_n is True and backend.capabilities.native_n
    assert [g.index for g in out] == [0, 1, 2, 3] and len({g.request_id for g in out}) == 1
    assert len({g.text for g in out}) > 1
    assert all(g.prompt_tokens > 5 for g in out) and sum(g.completion_tokens for g in out) > 0


def test_logprobs_pass_through(vllm_server):
    backend = OpenAICompatible(model="smollm2", base_url=vllm_server)
    (g,) = run(backend.generate(MSGS, PARAMS.model_copy(update={"logprobs": True, "top_logprobs": 2}), 1))
    assert g.logprobs and all(t.logprob <= 0 for t in g.logprobs)
    assert "".join(t.token for t in g.logprobs).strip() == g.text.strip()


def test_seed_top_k_and_min_p_reach_the_server(vllm_server):
    backend = OpenAICompatible(model="smollm2", base_url=vllm_server)
    first = [g.text for g in run(backend.generate(MSGS, PARAMS, 3))]
    assert first == [g.text for g in run(backend.generate(MSGS, PARAMS, 3))]  # the same seed, the same samples
    hot = PARAMS.model_copy(update={"temperature": 1.5, "max_tokens": 8})
    assert len({g.text for g in run(backend.generate(MSGS, hot.model_copy(update={"top_k": 1}), 4))}) == 1
    assert len({g.text for g in run(backend.generate(MSGS, hot.model_copy(update={"min_p": 1.0}), 4))}) == 1


def test_self_consistency_through_the_server(vllm_server, tmp_path):
    backend = OpenAICompatible(model="smollm2", base_url=vllm_server, batch_width=64)
    results = SelfConsistency(n=4, prompt="direct", max_tokens=12, seed=1).solve_many(
        ["What is 1 + 2?", "What is 4 + 4?"], backend=backend, cache=tmp_path / "c.db")
    assert all(len(r.candidates) == 4 and r.usage.calls == 1 for r in results)
