"""manyminds: many LLM samples, combined well.

    import manyminds as mm
    result = mm.strategies.SelfConsistency(n=8).solve("What is 7 + 5?", backend=mm.backends.Local())

Submodules load on first use (PEP 562), so `import manyminds` stays cheap and
the command line can start the model before LangGraph has finished importing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from manyminds.errors import BackendError, CacheError, CapabilityError, ConfigError, ManymindsError
from manyminds.types import (
    AnswerFormat,
    Candidate,
    Decision,
    Generation,
    Message,
    Result,
    SamplingParams,
    Task,
    Usage,
)

if TYPE_CHECKING:
    from manyminds import aggregators, backends, bench, strategies
    from manyminds.cache import GenerationCache
    from manyminds.session import Session

__version__ = "0.1.0"

_LAZY_MODULES = {"aggregators", "backends", "bench", "datasets", "strategies", "agents", "verifiers", "answers", "cache"}
_LAZY_NAMES = {"GenerationCache": "manyminds.cache", "Session": "manyminds.session"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"manyminds.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'manyminds' has no attribute {name!r}")


__all__ = [
    "AnswerFormat",
    "BackendError",
    "CacheError",
    "Candidate",
    "CapabilityError",
    "ConfigError",
    "Decision",
    "Generation",
    "GenerationCache",
    "ManymindsError",
    "Message",
    "Result",
    "SamplingParams",
    "Session",
    "Task",
    "Usage",
    "aggregators",
    "backends",
    "bench",
    "datasets",
    "strategies",
]
