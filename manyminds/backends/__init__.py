"""Backends: where samples come from. `from_spec` turns a CLI spec into one."""

from __future__ import annotations

import re

from manyminds.backends.base import REGISTRY, Backend, Capabilities, sample_seed
from manyminds.backends.local import Local
from manyminds.backends.openai_compat import OpenAICompatible
from manyminds.backends.scripted import Scripted, ScriptedRequest
from manyminds.backends.vllm import VLLM
from manyminds.errors import ConfigError
from manyminds.plugins import checked_call, parse_spec

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

SPEC_HELP = ("local, local:PATH.gguf, openai:MODEL, openai:MODEL@BASE_URL, vllm:MODEL, scripted:REPLY|REPLY, "
             "or KIND:KEY=VALUE,... (openai:model=M,base_url=URL,batch_width=64)")


def from_spec(spec: str) -> Backend:
    """Build a backend from a spec such as ``local`` or ``openai:gpt-4o-mini@http://host/v1``.

    The part before the first ':' names a factory in the ``manyminds.backends``
    entry-point group, so plugins add their own kinds. After it, the one spec grammar: keyword
    parameters (``openai:model=gpt-4o-mini,base_url=http://host/v1,batch_width=64``), checked against
    the factory's signature, or the kind's own short form (``openai:MODEL@URL``, ``local:PATH``,
    ``scripted:REPLY|REPLY``), given to the factory as one value.
    """
    kind, _, rest = spec.strip().partition(":")
    if kind not in REGISTRY.names():
        raise ConfigError(f"unknown backend spec {spec!r}: use {SPEC_HELP} (installed kinds: "
                          f"{', '.join(REGISTRY.names())})")
    factory = REGISTRY.get(kind)
    if not _KEYWORDS.fullmatch(rest):
        return factory(rest)
    _, params = parse_spec(spec, "backend")
    secret = sorted(k for k in params if re.search(r"(^|_)(key|token|secret|password)$", k, re.I))
    if secret:
        raise ConfigError(f"backend spec {kind}:...: a credential ({', '.join(secret)}) is never given in a "
                          "spec (it lands in shell histories and run records); set the backend's environment "
                          "variable (OPENAI_API_KEY)")
    return checked_call(factory, params, f"backend {kind!r}", given={"rest": ""})


_KEYWORDS = re.compile(r"[A-Za-z_]\w*=[^,]*(?:,[A-Za-z_]\w*=[^,]*)*")
"""`KEY=VALUE,...`: the keyword form (a reply or a path never looks like it)."""
