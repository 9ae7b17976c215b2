"""Backends: where samples come from. `from_spec` turns a CLI spec into one."""

from __future__ import annotations

from manyminds.backends.base import REGISTRY, Backend, Capabilities, sample_seed
from manyminds.backends.local import Local
from manyminds.backends.openai_compat import OpenAICompatible
from manyminds.backends.scripted import Scripted, ScriptedRequest
from manyminds.backends.vllm import VLLM
from manyminds.errors import ConfigError

__all__ = [
    "Backend",
    "Capabilities",
    "Local",
    "OpenAICompatible",
    "Scripted",
    "ScriptedRequest",
    "VLLM",
    "from_spec",
    "sample_seed",
]

SPEC_HELP = "local, local:PATH.gguf, openai:MODEL, openai:MODEL@BASE_URL, vllm:MODEL, scripted:REPLY|REPLY"


def from_spec(spec: str) -> Backend:
    """Build a backend from a spec such as ``local`` or ``openai:gpt-4o-mini@http://host/v1``.

    The part before the first ':' names a factory in the ``manyminds.backends``
    entry-point group, so plugins add their own kinds.
    """
    kind, _, rest = spec.strip().partition(":")
    if kind not in REGISTRY.names():
        raise ConfigError(f"unknown backend spec {spec!r}: use {SPEC_HELP} (installed kinds: "
                          f"{', '.join(REGISTRY.names())})")
    return REGISTRY.get(kind)(rest)
