"""A tiny name → factory registry, one per extensible family (backbones, losses, methods, ...).

`register(name)` files a factory under a name (a duplicate is an error); `get(name)` returns it or
raises `UnknownNameError` listing the known names and close matches.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from videolt.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one family, e.g. `BACKBONES = Registry("backbone")`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator filing `obj` under `name`."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

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
