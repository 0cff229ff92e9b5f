"""Name → factory registries, one per kind of component (backbones, losses, methods, ...).

`register(name)` files a factory under a name (a duplicate is an error); `get(name)` returns it or
raises `UnknownNameError` listing the known names and close matches; `create(name, *inputs, **opts)`
builds one with its options checked; `describe()` lists every entry with a one-line summary and its
options' defaults, which the CLI help, the config docs and docs/components.md are made from.

A factory's options are its keyword-only parameters, less its family's run-time `facts` (values the
caller knows, such as the run's seed, handed only to the factories that take them); its positional
parameters are the inputs every factory of the family takes (a loss's class counts, ...). The
defaults in the signature are the only place an option's default is written. Entries that are data
rather than factories (a method, a decoder) have no options; `summary` says how to summarise them.
A family's package registers every module in it (`import_modules`): a new component is one new file.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Sequence, TypeVar

from videolt.errors import ConfigError, UnknownNameError

__all__ = ["REQUIRED", "Description", "Registry", "docstring_summary", "import_modules", "option_error"]

T = TypeVar("T")

REQUIRED = inspect.Parameter.empty  # the "default" of an option the factory has no default for


@dataclass(frozen=True)
class Description:
    """One registered entry: its name, one-line summary, and options with their defaults."""

    name: str
    summary: str
    options: dict[str, Any]


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every public module of a package (`import_modules(__name__, __path__)` in its `__init__`), so that
    a component's registration runs when its file is added, with no import line to write."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


def option_error(what: str, unknown: Sequence[str], known: Sequence[str], key: str = "", note: str = "") -> ConfigError:
    """The one error for option keys that `what` (e.g. "loss 'focal'") does not take, with close matches;
    `key` is the config key the options were given under (e.g. "loss_opts"), `note` a last clause."""
    close = list(dict.fromkeys(m for u in unknown for m in difflib.get_close_matches(u, known, n=1)))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = f"{key}: " if key else ""
    return ConfigError(f"{where}{what} has no option {', '.join(unknown)}{hint} "
                       f"(options: {', '.join(known) or 'none'}){note}")


def docstring_summary(obj: object) -> str:
    """The summary paragraph of `obj`'s own docstring ("" without one: a class's base docstring is not its)."""
    doc = inspect.cleandoc(getattr(obj, "__doc__", None) or "")
    return " ".join(doc.split("\n\n")[0].split())


class Registry(Generic[T]):
    """Named factories of one family, e.g. `LOSSES = Registry("loss", facts=("train_videos",), key="loss_opts")`.

    kind: what an entry is, in messages; facts: keyword parameters the family's caller supplies, never
    options; key: the config key its options are set under, named in errors; summary: the one-line
    summary of an entry (default: the first sentence of its docstring).
    """

    def __init__(self, kind: str, *, facts: Sequence[str] = (), key: str = "",
                 summary: Callable[[T], str] = docstring_summary):
        self.kind = kind
        self.facts = tuple(facts)
        self.key = key
        self._summary = summary
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator filing `obj` under `name`."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove `name` (for tests that register a component of their own)."""
        del self._entries[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def options(self, name: str) -> dict[str, Any]:
        """The options of entry `name` with their defaults (`REQUIRED` where there is none), in signature order."""
        entry = self.get(name)
        if not callable(entry):
            return {}
        params = inspect.signature(entry).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in self.facts}

    def check_options(self, name: str, opts: Mapping[str, Any]) -> None:
        """A `ConfigError` naming every key of `opts` that entry `name` does not take, with close matches."""
        known = list(self.options(name))
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise option_error(f"{self.kind} {name!r}", unknown, known, self.key)

    def create(self, name: str, /, *inputs: Any, facts: Mapping[str, Any] | None = None, **opts: Any) -> Any:
        """Build entry `name` from the family's `inputs` and the user's `opts` (checked first); each of
        `facts` reaches the factory only if it takes it, and one it requires must not be None."""
        factory = self.get(name)
        self.check_options(name, opts)
        params = inspect.signature(factory).parameters  # type: ignore[arg-type]
        given = {}
        for fact, value in (facts or {}).items():
            if fact in params:
                if value is None and params[fact].default is REQUIRED:
                    raise ConfigError(f"{self.kind} {name!r} needs {fact}")
                given[fact] = value
        return factory(*inputs, **given, **opts)  # type: ignore[operator]

    def describe(self) -> list[Description]:
        """Every entry, by name: its one-line summary and its options with their defaults."""
        return [Description(name, self._summary(self._entries[name]), self.options(name)) for name in self.names()]
