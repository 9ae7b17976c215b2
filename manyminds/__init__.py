"""manyminds: many LLM samples, combined well.

    import manyminds as mm
    result = mm.strategies.SelfConsistency(n=8).solve("What is 7 + 5?", backend=mm.backends.Local())
"""

from manyminds import aggregators, backends, strategies
from manyminds.cache import GenerationCache
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

__version__ = "0.1.0"

__all__ = [
    "AnswerFormat",
    "BackendError",
    "CacheError",
    "Candidate",
    "CapabilityError",
    "ConfigError",
    "Decision",
    "GenerationCache",
    "Generation",
    "ManymindsError",
    "Message",
    "Result",
    "SamplingParams",
    "Task",
    "Usage",
    "aggregators",
    "backends",
    "strategies",
]
