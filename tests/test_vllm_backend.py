"""The vLLM offline-engine adapter, against a stand-in `vllm` module (vLLM itself needs a GPU build).

What is tested is our side: parameters passed to the engine, micro-batching
of concurrent requests into one `LLM.chat` call, and outputs (text, token
counts, logprobs, sample indices) turned into Generations.
"""

import asyncio
import os
import sys
import types
from dataclasses import dataclass, field

import pytest

from manyminds.backends import VLLM, from_spec
from manyminds.errors import ConfigError
from manyminds.strategies import SelfConsistency
from manyminds.types import Message, SamplingParams


@dataclass
class Logprob:
    logprob: float
    rank: int
    decoded_token: str


@dataclass
class Completion:
    text: str
    token_ids: list
    finish_reason: str = "stop"
    logprobs: list | None = None


@dataclass
class Output:
    request_id: str
    prompt_token_ids: list
    outputs: list = field(default_factory=list)


class FakeParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLLM:
    instances = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        FakeLLM.instances.append(self)

    def chat(self, conversations, params, use_tqdm=False):
        self.calls.append((conversations, params))
        out = []
        for k, (conv, p) in enumerate(zip(conversations, params)):
            completions = []
            for j in range(p.n):
                text = f"The answer is {p.seed % 7 + j}."
                lps = [{1: Logprob(-0.5, 1, "The"), 2: Logprob(-1.5, 2, "A")}, {3: Logprob(-0.1, 1, " answer")}]
                completions.append(Completion(text=text, token_ids=[1, 3], logprobs=lps if p.logprobs else None))
            out.append(Output(request_id=f"r{len(self.calls)}-{k}", prompt_token_ids=[0] * 7, outputs=completions))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    return module


MSGS = [Message(role="user", content="What is 3 + 4?")]


def test_parameters_and_outputs(fake_vllm):
    backend = VLLM("tiny-model", max_batch=8, dtype="float32")
    params = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=20, seed=3, logprobs=True, top_logprobs=2)
    out = asyncio.run(backend.generate(MSGS, params, 3, first_index=4))
    (llm,) = FakeLLM.instances
    assert llm.model == "tiny-model" and llm.kwargs["dtype"] == "float32"
    assert llm.kwargs["enable_prefix_caching"] is True  # on by default
    if "gpu_memory_utilization" in llm.kwargs:  # a CPU host: a small share, not vLLM's 0.92
        assert 0.05 <= llm.kwargs["gpu_memory_utilization"] < 0.92
    (conversations, engine_params), = llm.calls
    p = engine_params[0]
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.logprobs) == (3, 0.5, 0.9, 20, 2)
    assert conversations == [[{"role": "user", "content": "What is 3 + 4?"}]]
    assert [g.index for g in out] == [4, 5, 6]
    assert all(g.prompt_tokens == 7 and g.completion_tokens == 2 for g in out)
    assert len({g.request_id for g in out}) == 1, "one engine request carries the n samples"
    assert [t.token for t in out[0].logprobs] == ["The", " answer"]
    assert out[0].logprobs[0].top == {"The": -0.5, "A": -1.5}


def test_concurrent_requests_share_one_engine_call(fake_vllm):
    backend = VLLM("tiny-model", batch_window=0.05)
    results = SelfConsistency(n=2, seed=1).solve_many([f"What is {i} + 1?" for i in range(5)], backend=backend,
                                                       concurrency=5)
    (llm,) = FakeLLM.instances
    assert len(llm.calls) == 1 and len(llm.calls[0][0]) == 5
    assert all(r.usage.samples == 2 and r.usage.calls == 1 for r in results)


def test_later_samples_get_their_own_seed(fake_vllm):
    backend = VLLM("tiny-model")
    params = SamplingParams(seed=9)
    asyncio.run(backend.generate(MSGS, params, 2, first_index=0))
    asyncio.run(backend.generate(MSGS, params, 2, first_index=2))
    seeds = [call[1][0].seed for call in FakeLLM.instances[0].calls]
    assert seeds[0] != seeds[1]


def test_engine_failure_reaches_the_caller(fake_vllm, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(FakeLLM, "chat", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        asyncio.run(VLLM("tiny-model").generate(MSGS, SamplingParams(), 1))


def test_spec_and_missing_vllm(monkeypatch):
    assert isinstance(from_spec("vllm:some/model"), VLLM)
    with pytest.raises(ConfigError, match="needs a model"):
        from_spec("vllm:")
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ConfigError, match="not installed"):
        asyncio.run(VLLM("m").generate(MSGS, SamplingParams(), 1))


@pytest.mark.parametrize(("how", "unsafe"), [("unguarded", True), ("guarded", False), ("stdin", True),
                                              ("module", False)])
def test_a_main_module_that_would_run_again_is_recognised(tmp_path, how, unsafe):
    """What decides whether vLLM's engine may run in a process of its own (which imports __main__ again)."""
    import subprocess
    import sys

    body = "from manyminds.backends.vllm import unguarded_main\nprint('WHY', unguarded_main())\n"
    if how == "guarded":
        body = "def main():\n    " + body.replace("\n", "\n    ").rstrip() + "\n\nif __name__ == '__main__':\n    main()\n"
    script = tmp_path / "prog.py"
    script.write_text(body)
    if how == "stdin":
        args, stdin = [sys.executable, "-"], body
    elif how == "module":
        args, stdin = [sys.executable, "-m", "prog"], None
    else:
        args, stdin = [sys.executable, str(script)], None
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    why = done.stdout.split("WHY", 1)[1].strip()
    assert (why != "None") is unsafe, (how, done.stdout, done.stderr[-1000:])


def test_vllms_own_parallelism_reaches_the_engine_from_a_spec(fake_vllm):
    backend = from_spec("vllm:model=tiny-model,tp=2,dp=4,executor=mp")
    asyncio.run(backend.generate(MSGS, SamplingParams(max_tokens=4, seed=1), 1))
    (llm,) = FakeLLM.instances
    assert llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["data_parallel_size"] == 4
    assert llm.kwargs["distributed_executor_backend"] == "mp" and "pipeline_parallel_size" not in llm.kwargs
    with pytest.raises(ConfigError, match="tp must be a whole number"):
        from_spec("vllm:model=tiny-model,tp=0")
    with pytest.raises(ConfigError, match="executor must be one of"):
        from_spec("vllm:model=tiny-model,executor=slurm")
