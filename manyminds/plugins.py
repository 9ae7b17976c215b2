"""Entry-point plugin discovery, shared by every registry (backends, aggregators).

Built-ins are declared in pyproject.toml under the same entry-point groups as
third-party plugins; `BUILTINS` is the same table, used only when package
metadata is unavailable (running from a source tree that was never installed).
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger("manyminds.plugins")

BUILTINS: dict[str, dict[str, str]] = {
    "manyminds.backends": {
        "local": "manyminds.backends.local:from_spec",
        "openai": "manyminds.backends.openai_compat:from_spec",
        "scripted": "manyminds.backends.scripted:from_spec",
        "vllm": "manyminds.backends.vllm:from_spec",
    },
    "manyminds.aggregators": {
        "majority": "manyminds.aggregators.majority:Majority",
        "weighted": "manyminds.aggregators.weighted:WeightedMajority",
        "rpc": "manyminds.aggregators.rpc:RPC",
        "model-consistency": "manyminds.aggregators.model_consistency:ModelConsistency",
    },
}


def _load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def discover(group: str) -> dict[str, Any]:
    """Name -> loaded object for every plugin of `group` (built-ins included)."""
    found: dict[str, Any] = {}
    targets = dict(BUILTINS.get(group, {}))
    for ep in entry_points(group=group):
        targets[ep.name] = ep.value
    for name, target in targets.items():
        try:
            found[name] = _load_target(target)
        except Exception as error:  # a broken third-party plugin must not break the rest
            log.warning("plugin %s=%s in %s failed to load: %s", name, target, group, error)
    return found
