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

Backends are declared as lazy targets (`Registry.declare`, `lazy_plugins`)
instead of a package scan: importing every backend module (the OpenAI client,
vLLM's shims) would cost half a second of every CLI start.

A name is taken once: a second entry under a name (a plugin's `majority`) is
refused with an error naming both providers. `distribution_of` and
`plugin_versions` say which installed distribution provides an entry, for
`manyminds plugins` and for every benchmark run's record.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import typing
import pkgutil
import types
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from manyminds.errors import ConfigError, one_line

log = logging.getLogger("manyminds.plugins")
T = TypeVar("T")

def _load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        value = getattr(value, part)
    return value


class Registry(Generic[T]):
    """Named entries of one kind, from decorators, the kind's own package and an entry-point group."""

    def __init__(self, kind: str, group: str, package: str | None = None, *, lazy_plugins: bool = False) -> None:
        self.kind = kind
        self.lazy_plugins = lazy_plugins
        """Entry points are declared (`declare`), imported on first use, not at the first lookup."""
        self.group = group
        self.package = package
        self._entries: dict[str, T] = {}
        self._scanned: set[str] = set()
        self._scanned_path: tuple[str, ...] | None = None
        self._plugins_loaded = False
        self._lazy: dict[str, str] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`. A name already taken by another entry is refused, naming both
        providers: a plugin must never replace a built-in (or another plugin) without a word.
        The same definition again (a module imported twice, a class redefined in place) replaces it."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")
        old = self._entries.get(name)
        if old is not None and old is not entry and _identity(old) != _identity(entry):
            raise ConfigError(
                f"{self.kind} {name!r} is registered twice: by {provider(old)} and by {provider(entry)}; "
                f"rename one (a plugin may namespace its names as 'package/{name}')")
        self._entries[name] = entry
        return entry

    def declare(self, name: str, target: str) -> None:
        """A lazy entry: `module:attribute`, imported on first `get` (backends: importing every
        backend module would cost half a second of each CLI start)."""
        known = self._lazy.get(name) or (_target_of(self._entries[name]) if name in self._entries else None)
        if known is not None and known != target:
            log.warning("%s %r is declared twice: by %s and by %s; the first is kept (rename the other, or "
                        "namespace it as 'package/%s')", self.kind, name, known, target, name)
            return
        self._lazy[name] = target

    def decorator(self, name: str) -> Callable[[T], T]:
        def register(entry: T) -> T:
            try:
                setattr(entry, "name", name)
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
            for ep in entry_points(group=self.group):
                if self.lazy_plugins:
                    self.declare(ep.name, ep.value)
                    continue
                try:
                    value = _load_target(ep.value)
                    if not isinstance(value, types.ModuleType):  # a module registers its own entries
                        self.register(ep.name, value)
                except Exception as error:  # a broken or clashing plugin must not break the rest
                    log.warning("plugin %s=%s in %s was not loaded: %s", ep.name, ep.value, self.group, error)

    def all(self) -> dict[str, T]:
        """Every entry, lazy ones loaded (those that fail to load are left out, with a warning)."""
        self._scan()
        for name in list(self._lazy):
            if name not in self._entries:
                try:
                    self._load_lazy(name)
                except ConfigError as error:
                    log.warning("%s", error)
        return dict(self._entries)

    def names(self) -> list[str]:
        """Every name, without loading lazy entries."""
        self._scan()
        return sorted(set(self._entries) | set(self._lazy))

    def get(self, name: str) -> T:
        if name not in self._entries and name not in self._lazy:
            self._scanned_path = None  # a miss: look at the folders again (a file may have been added)
            self._scan()
        if name not in self._entries and name in self._lazy:
            self._load_lazy(name)
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}: available are {', '.join(self.names())}")
        return self._entries[name]

    def _load_lazy(self, name: str) -> None:
        target = self._lazy[name]
        try:
            value = _load_target(target)
        except Exception as error:
            raise ConfigError(f"{self.kind} {name!r} ({target}) failed to load: {error}") from None
        self.register(name, value)


def _target_of(entry: Any) -> str:
    return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', type(entry).__name__)}"


def _identity(entry: Any) -> tuple[str, str]:
    return (getattr(entry, "__module__", "") or "", getattr(entry, "__qualname__", "") or repr(entry))


def distribution_of(entry: Any) -> tuple[str, str | None]:
    """The installed distribution that provides `entry` and its version (the module's name and None
    where no distribution does: a script, a test, a module on the path)."""
    from importlib.metadata import PackageNotFoundError, version

    module = getattr(entry, "__module__", None) or type(entry).__module__
    top = module.split(".")[0]
    for name in _distributions().get(top, []):
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    if top == "manyminds":  # a source tree that was never installed
        from manyminds import __version__

        return "manyminds", __version__
    return module, None


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    return dict(packages_distributions())


def provider(entry: Any) -> str:
    """Who provides a registered entry, for messages: 'module.Class (distribution version)'."""
    name, version = distribution_of(entry)
    where = f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', type(entry).__name__)}"
    return f"{where} ({name} {version})" if version else where


def plugin_versions(objects: Any) -> dict[str, str]:
    """The distributions (and versions) providing what `objects` are built from: strategies and,
    inside them, their aggregator, verifier, stopping rule and nested strategies. A run records it,
    so a result says which plugin code produced it."""
    from pydantic import BaseModel

    found: dict[str, str] = {}
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if obj is None or id(obj) in seen or isinstance(obj, (str, int, float, bool, bytes)):
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            for item in obj:
                visit(item)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                visit(item)
            return
        name, version = distribution_of(type(obj))
        if version is not None:
            found[name] = version
        aggregation = getattr(obj, "aggregation", None)
        if callable(aggregation) and isinstance(obj, BaseModel):
            factory = getattr(aggregation(), "factory", None)  # the registered aggregator deciding
            if factory is not None:
                dist, v = distribution_of(factory)
                if v is not None:
                    found[dist] = v
        if isinstance(obj, BaseModel):
            for field in type(obj).model_fields:
                visit(getattr(obj, field, None))

    for obj in objects:
        visit(obj)
    return dict(sorted(found.items()))


def _plain(value: Any) -> bool:
    """Whether `value` is plain data a run record can hold (a function or a backend is not)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def records_arguments(cls: type[T]) -> type[T]:
    """Capture the arguments `cls` is constructed with, once, for the run record: instances get a
    `params()` returning them (defaults applied; arguments left at None and values that are not plain
    data, such as functions, left out) unless the class writes its own. Registering decorators
    (`@aggregator`) apply it, so a plugin's aggregator needs no hand-written `params()`."""
    init = cls.__init__
    if init is object.__init__:  # no arguments to capture; params() is {} (and an argument stays refused)
        if not callable(getattr(cls, "params", None)):
            setattr(cls, "params", recorded_params)
        return cls
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_manyminds_arguments" not in self.__dict__:  # the outermost class's arguments are the record
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.__dict__["_manyminds_arguments"] = {
                name: value for name, value in list(bound.arguments.items())[1:]
                if signature.parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                           inspect.Parameter.VAR_KEYWORD)
                and value is not None and _plain(value)}
        init(self, *args, **kwargs)

    setattr(cls, "__init__", __init__)
    if not callable(getattr(cls, "params", None)):
        setattr(cls, "params", recorded_params)
    return cls


def recorded_params(self: Any) -> dict[str, Any]:
    """The arguments the object was constructed with (`records_arguments`)."""
    return dict(self.__dict__.get("_manyminds_arguments", {}))


class RecordsArguments:
    """A base whose `params()` are the constructor's arguments (captured by `records_arguments`,
    which the registering decorators apply): what a type checker sees of the protocol's `params`."""

    def params(self) -> dict[str, Any]:
        return recorded_params(self)


def parse_spec(text: str, what: str, argument: str | None = None) -> tuple[str, dict[str, Any]]:
    """The one spec grammar of aggregators, stopping rules and verifiers: `NAME[:KEY=VALUE,...]`.

    Values are read as JSON where they can be (`window=5` is 5, `by=logprob` the text). Where the
    entry names its one `argument`, `NAME:VALUE` is short for `NAME:argument=VALUE` (`esc:5`).
    """
    import json

    name, _, rest = text.strip().partition(":")
    params: dict[str, Any] = {}
    items = [item for item in rest.split(",") if item.strip()] if rest else []
    if argument is not None and len(items) == 1 and "=" not in items[0]:
        items = [f"{argument}={items[0]}"]
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{what} {text!r}: expected NAME or NAME:KEY=VALUE,... (got {item!r})")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value.strip()
    if not name.strip():
        raise ConfigError(f"{what} {text!r}: no name before the ':'")
    return name.strip(), params


def spec_of(obj: Any) -> dict[str, Any]:
    """What an object was built with, as recorded in results: its name and parameters."""
    params = obj.params() if hasattr(obj, "params") else {}
    return {"name": getattr(obj, "name", type(obj).__name__), **params}


def checked_call(factory: Callable[..., T], params: dict[str, Any], what: str,
                 given: dict[str, Any] | None = None) -> T:
    """`factory(**params)`, once each parameter is known to it and of its annotated type.

    The one check between user input (a CLI spec such as `weighted:by=nothing`, a JSON
    setting) and a plugin's constructor: an unknown or ill-typed parameter is a
    ConfigError naming it, never a TypeError from deep inside. `given` are arguments the
    caller supplies itself (a verifier factory's options): passed, never checked or listed.
    """
    given = given or {}
    from pydantic import ConfigDict, ValidationError, create_model

    target = getattr(factory, "__init__") if isinstance(factory, type) else factory
    try:
        unwrapped = inspect.unwrap(target)
        signature = inspect.Signature() if unwrapped is object.__init__ else inspect.signature(target)
    except (TypeError, ValueError):
        return factory(**given, **params)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # an annotation that cannot be resolved here is not checked
        hints = {}
    accepted = {name: p for name, p in signature.parameters.items()
                if name != "self" and name not in given and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
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
        raise ConfigError(f"{what}: {one_line(error)}") from None
    return factory(**given, **params)

