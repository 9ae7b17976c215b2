"""n samples of one prompt decoded as one batch on llama.cpp: the prompt evaluated once.

The embedded model used to make n separate completions, each evaluating the
prompt (or reusing it) and decoding one token per step. Here the prompt is
decoded once into sequence 0 of a context of our own, its KV cells are
copied to sequences 1..n-1 (`llama_memory_seq_cp`), and every step decodes
one token of each unfinished sample in a single `llama_decode` call: one
pass over the weights serves all samples. Sampling happens in numpy with
llama.cpp's own filters and defaults (top-k 40, top-p, min-p 0.05, then
temperature), each sample drawing from its own generator seeded from (base
seed, sample index), so samples are reproducible and distinct. Logprobs are
the log-softmax of the model's logits at each sampled token (before
temperature), as the server reports them. A sample whose group confidence falls below
`params.stop_below_confidence` stops decoding there (DeepConf online), freeing its place in the
batch.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from manyminds.backends.base import ConfidenceWatch, request_fingerprint, sample_seed
from manyminds.types import SamplingParams, TokenLogprob

DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05


@dataclass
class _Sequence:
    index: int
    rng: Any
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    index: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[TokenLogprob, ...] | None


class BatchedSampler:
    """Samples of one prompt, decoded together on a llama.cpp context of their own.

    Args:
        llama: a loaded `llama_cpp.Llama` (its model, tokenizer and chat template are used).
        n_ctx: KV cells of the batch context, shared by all sequences (prompt + n x max_tokens).
        max_sequences: most samples decoded at once.
    """

    def __init__(self, llama: Any, *, n_ctx: int = 8192, max_sequences: int = 16, n_threads: int | None = None):
        import llama_cpp
        import numpy as np
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._cpp, self._np = llama_cpp, np
        self.llama = llama
        self.max_sequences = max_sequences
        self.n_ctx = n_ctx
        # The loaded model's own settings (KV types, rope, threads); only the sizes differ, and
        # the attention kernel is llama.cpp's choice (flash attention on the CPU): with it, a
        # sample's logits do not depend on which other sequences share the batch (measured
        # here; the plain kernel's sums change with the batch), so sample i is the same text
        # however it is requested. Logprobs then differ from a plain completion's by up to
        # ~0.04 nats; greedy requests, one sample by nature, use plain completions.
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.flash_attn_type = -1  # LLAMA_FLASH_ATTN_TYPE_AUTO
        params.n_ctx = n_ctx
        params.n_batch = max(512, max_sequences)
        params.n_ubatch = params.n_batch
        params.n_seq_max = max_sequences
        params.kv_unified = True  # one pool of cells: a sequence may use what it needs
        if n_threads:
            params.n_threads = params.n_threads_batch = n_threads
        self._ctx = llama_cpp.llama_init_from_model(llama.model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a batch context")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, max_sequences)
        self._prompt: list[int] = []
        """The prompt whose KV cells sequence 0 holds, so the next request reuses what it shares."""
        template = llama.metadata.get("tokenizer.chat_template")
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "ignore")
        bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "ignore")
        self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos) if template else None

    def close(self) -> None:
        if self._ctx:
            self._cpp.llama_batch_free(self._batch)
            self._cpp.llama_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown
        try:
            self.close()
        except Exception:
            pass

    # -- prompt ----------------------------------------------------------------

    def prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """The chat template applied and tokenised as llama-cpp-python's chat completion does."""
        if self._format is None:
            raise RuntimeError("the model has no chat template")
        formatted = self._format(messages=messages)  # type: ignore[arg-type]  # llama-cpp-python's stub wants its role TypedDicts; it reads plain role/content dicts
        tokens = self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special,
                                     special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else ([formatted.stop] if formatted.stop else [])
        return tokens, stops

    def fits(self, prompt: int, n: int, max_tokens: int) -> bool:
        return n <= self.max_sequences and prompt + n * max_tokens <= self.n_ctx

    # -- decoding --------------------------------------------------------------

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Put (token, position, sequence, wants logits) entries in the batch."""
        batch = self._batch
        for k, (token, pos, seq, logits) in enumerate(entries):
            batch.token[k] = token
            batch.pos[k] = pos
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = seq
            batch.logits[k] = logits
        batch.n_tokens = len(entries)

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        self._fill(entries)
        status = self._cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}): the batch context may be too small")

    def _logits(self, rows: int) -> Any:
        """The logits of the last decode's `rows` outputs, one row each (a view, float32)."""
        pointer = self._cpp.llama_get_logits(self._ctx)
        return self._np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                           shape=(rows, self.n_vocab))

    def _choose(self, logits: Any, params: SamplingParams, rngs: list[Any]) -> Any:
        """One token per row by llama.cpp's chain (top-k, top-p, min-p, then temperature),
        vectorised over the rows; row r draws from generator r."""
        np = self._np
        if params.temperature <= 0:
            return np.argmax(logits, axis=1)
        k = min(params.top_k or DEFAULT_TOP_K, logits.shape[1])
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(logits, top, axis=1).astype(np.float64)
        order = np.argsort(-values, axis=1)
        top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
        probs = np.exp(values - values[:, :1])
        probs /= probs.sum(axis=1, keepdims=True)
        keep = np.ones_like(probs, dtype=bool)
        if params.top_p < 1.0:  # the smallest head whose mass reaches top_p
            keep &= (np.cumsum(probs, axis=1) - probs) < params.top_p
        min_p = DEFAULT_MIN_P if params.min_p is None else params.min_p
        if min_p > 0:
            keep &= probs >= min_p * probs[:, :1]
        keep[:, 0] = True
        weights = np.where(keep, probs, 0.0) ** (1.0 / params.temperature)
        cumulative = np.cumsum(weights, axis=1)
        draws = np.array([rng.random() for rng in rngs]) * cumulative[:, -1]
        chosen = (cumulative <= draws[:, None]).sum(axis=1).clip(max=k - 1)
        return top[np.arange(len(top)), chosen]

    def _logsoftmax(self, row: Any) -> Any:
        np = self._np
        shifted = row.astype(np.float64) - float(row.max())
        return shifted - np.log(np.exp(shifted).sum())

    def sample(self, messages: list[dict[str, str]], params: SamplingParams, indices: list[int]) -> list[Completion]:
        """Samples `indices` of the prompt, decoded together."""
        np, cpp = self._np, self._cpp
        prompt, template_stops = self.prompt_tokens(messages)
        stops = [s for s in (*params.stop, *template_stops) if s]
        n = len(indices)
        reused = self._keep_prefix(prompt)
        for start in range(reused, len(prompt), self._batch_capacity()):
            chunk = prompt[start:start + self._batch_capacity()]
            self._decode([(t, start + j, 0, start + j == len(prompt) - 1) for j, t in enumerate(chunk)])
        self._prompt = list(prompt)
        for s in range(1, n):
            cpp.llama_memory_seq_cp(self._memory, 0, s, -1, -1)
        first = self._logits(1)[0].copy()
        request = request_fingerprint(messages, params)
        seqs = [_Sequence(index=i, rng=np.random.default_rng(sample_seed(params.seed, i, request))) for i in indices]
        logits = np.repeat(first[None, :], n, axis=0)
        live = list(range(n))
        floor = params.stop_below_confidence
        watches = [ConfidenceWatch(floor, params.stop_window) if floor is not None else None for _ in seqs]
        position = len(prompt)
        pieces: list[bytearray] = [bytearray() for _ in seqs]
        while live:
            tokens = self._choose(logits, params, [seqs[s].rng for s in live])
            still = []
            for row, s in enumerate(live):
                seq, token = seqs[s], int(tokens[row])
                if cpp.llama_vocab_is_eog(self._vocab, token):
                    seq.finish_reason = "stop"
                    continue
                seq.tokens.append(token)
                if params.logprobs:
                    seq.logprobs.append(self._logprob(token, self._logsoftmax(logits[row]), params.top_logprobs))
                pieces[s] += self.llama.detokenize([token], prev_tokens=seq.tokens[:-1])
                seq.text = pieces[s].decode("utf-8", errors="ignore")
                cut = min((seq.text.find(stop) for stop in stops if stop in seq.text), default=-1)
                if cut >= 0:
                    seq.text, seq.finish_reason = seq.text[:cut], "stop"
                    continue
                if len(seq.tokens) >= params.max_tokens:
                    seq.finish_reason = "length"
                    continue
                watch = watches[s]
                if watch is not None and watch.push(seq.logprobs[-1]):
                    seq.finish_reason = "aborted"  # DeepConf online: its slot in the batch is freed now
                    continue
                still.append(s)
            live = still
            if not live:
                break
            self._decode([(seqs[s].tokens[-1], position, s, True) for s in live])
            logits = self._logits(len(live))
            position += 1
        return [
            Completion(index=seq.index, text=seq.text, finish_reason=seq.finish_reason or "length",
                       prompt_tokens=len(prompt), completion_tokens=len(seq.tokens),
                       logprobs=tuple(seq.logprobs) if params.logprobs else None)
            for seq in seqs
        ]

    def _keep_prefix(self, prompt: list[int]) -> int:
        """Drop every cell but sequence 0's part of the prompt shared with the last request
        (few-shot prompts share their exemplars); returns how many prompt tokens it keeps.
        The last prompt token is always decoded again, for its logits."""
        cpp = self._cpp
        common = 0
        limit = min(len(self._prompt), len(prompt) - 1)
        while common < limit and self._prompt[common] == prompt[common]:
            common += 1
        for s in range(1, self.max_sequences):
            cpp.llama_memory_seq_rm(self._memory, s, -1, -1)
        if common == 0 or not cpp.llama_memory_seq_rm(self._memory, 0, common, -1):
            cpp.llama_memory_clear(self._memory, True)
            common = 0
        return common

    def _batch_capacity(self) -> int:
        return max(512, self.max_sequences)

    def _logprob(self, token: int, logsoftmax: Any, top: int) -> TokenLogprob:
        piece = self.llama.detokenize([token]).decode("utf-8", errors="replace")
        best = None
        if top:
            ids = self._np.argpartition(-logsoftmax, top)[:top]
            best = {self.llama.detokenize([int(t)]).decode("utf-8", errors="replace"): float(logsoftmax[t])
                    for t in ids}
        return TokenLogprob(token=piece, logprob=float(logsoftmax[token]), top=best)
