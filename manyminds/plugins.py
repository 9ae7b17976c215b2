"""One registry for every kind of plugin: strategies, aggregators, verifiers, stopping rules, backends.

A registry finds its entries three ways, the same for built-ins and for
anyone else's:

- a decorator (`@aggregator("name")`, or a Strategy subclass with a `name`)
  registers an object when its module is imported;
- every module of the registry's own package is imported on first lookup, so
  a built-in is one file with one decorator and nothing else to edit;
- the registry's entry-point group (`manyminds.aggregators`, ...) names
  objects or modules of other distributions; a module is imported (its
  decorators register), any other object is registered under the entry
  point's name.

Backends are declared as lazy targets instead of a package scan: importing
every backend module (the OpenAI client, vLLM's shims) would cost half a
second of every CLI start. `BUILTIN_BACKENDS` mirrors the entry points in
pyproject.toml for a source tree that was never installed.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import typing
import pkgutil
import types
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from manyminds.errors import ConfigError

log = logging.getLogger("manyminds.plugins")
T = TypeVar("T")

BUILTIN_BACKENDS: dict[str, str] = {
    "local": "manyminds.backends.local:from_spec",
    "openai": "manyminds.backends.openai_compat:from_spec",
    "scripted": "manyminds.backends.scripted:from_spec",
    "vllm": "manyminds.backends.vllm:from_spec",
}


def _load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        value = getattr(value, part)
    return value


def discover(group: str, builtins: dict[str, str] | None = None) -> dict[str, Any]:
    """Name -> loaded object for every plugin of `group` (with `builtins` as lazy targets)."""
    found: dict[str, Any] = {}
    targets = dict(builtins or {})
    for ep in entry_points(group=group):
        targets[ep.name] = ep.value
    for name, target in targets.items():
        try:
            found[name] = _load_target(target)
        except Exception as error:  # a broken third-party plugin must not break the rest
            log.warning("plugin %s=%s in %s failed to load: %s", name, target, group, error)
    return found


class Registry(Generic[T]):
    """Named entries of one kind, from decorators, the kind's own package and an entry-point group."""

    def __init__(self, kind: str, group: str, package: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self.package = package
        self._entries: dict[str, T] = {}
        self._scanned: set[str] = set()
        self._scanned_path: tuple[str, ...] | None = None
        self._plugins_loaded = False

    def register(self, name: str, entry: T) -> T:
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        def register(entry: T) -> T:
            try:
                entry.name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return self.register(name, entry)

        return register

    def _scan(self) -> None:
        """Import the package's modules not imported yet (their decorators register).

        The folders are listed again only when the package's search path changed or a
        lookup missed (`get`), so listing names costs nothing on a hot path (a server's
        every request).
        """
        if self.package is not None:
            package = importlib.import_module(self.package)
            path = tuple(getattr(package, "__path__", []))
            if path == self._scanned_path and self._plugins_loaded:
                return
            self._scanned_path = path
            for info in pkgutil.iter_modules(path):
                if info.name.startswith("_") or info.name in self._scanned:
                    continue
                self._scanned.add(info.name)
                try:
                    importlib.import_module(f"{self.package}.{info.name}")
                except Exception as error:
                    log.warning("%s module %s.%s failed to load: %s", self.kind, self.package, info.name, error)
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for name, value in discover(self.group).items():
                if not isinstance(value, types.ModuleType):  # a module registers its own entries
                    self._entries.setdefault(name, value)

    def all(self) -> dict[str, T]:
        self._scan()
        return dict(self._entries)

    def names(self) -> list[str]:
        return sorted(self.all())

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._scanned_path = None  # a miss: look at the folders again (a file may have been added)
            self._scan()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}: available are {', '.join(self.names())}")
        return self._entries[name]


def spec_of(obj: Any) -> dict[str, Any]:
    """What an object was built with, as recorded in results: its name and parameters."""
    params = obj.params() if hasattr(obj, "params") else {}
    return {"name": getattr(obj, "name", type(obj).__name__), **params}


def checked_call(factory: Callable[..., T], params: dict[str, Any], what: str) -> T:
    """`factory(**params)`, once each parameter is known to it and of its annotated type.

    The one check between user input (a CLI spec such as `weighted:by=nothing`, a JSON
    setting) and a plugin's constructor: an unknown or ill-typed parameter is a
    ConfigError naming it, never a TypeError from deep inside.
    """
    from pydantic import ConfigDict, ValidationError, create_model

    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        signature = inspect.Signature() if target is object.__init__ else inspect.signature(target)
    except (TypeError, ValueError):
        return factory(**params)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # an annotation that cannot be resolved here is not checked
        hints = {}
    accepted = {name: p for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(f"{what} takes no {', '.join(unknown)} (it takes {', '.join(accepted) or 'nothing'})")
    fields: dict[str, Any] = {name: (hints.get(name, Any), ...) for name in params if name in accepted}
    model = create_model("Parameters", __config__=ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False),
                         **fields)
    try:
        model(**{k: v for k, v in params.items() if k in fields})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                             for e in error.errors())
        raise ConfigError(f"{what}: {problems}") from None
    return factory(**params)

