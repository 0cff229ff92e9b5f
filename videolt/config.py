"""Typed configuration: frozen dataclasses filled from YAML/TOML files and `--set key=value` overrides.

One loader for every stage. Unknown keys and mistyped values are `ConfigError`s naming the key and
saying what was expected; nothing is silently accepted or rewritten. Field docs live in each field's
`metadata["doc"]` so `describe(cls)` can print them; a field naming a registered component lists the
registry's names, read when described, so a new component shows in the help without an edit here.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import yaml

from videolt.errors import ConfigError

C = TypeVar("C")


def field(default: Any, doc: str, *, secret: bool = False, names: Callable[[], Sequence[str]] | None = None) -> Any:
    """A dataclass field with a one-line doc; mutable defaults become factories.

    A `secret` field (a credential, or a path to one) is left out of the dataclass's repr, so a
    logged or raised config never shows it. `names` (e.g. `LOSSES.names`) gives the names `{names}`
    in `doc` stands for, listed when the doc is described.
    """
    meta = {"doc": doc, "secret": secret, "names": names}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), repr=not secret, metadata=meta)
    return dataclasses.field(default=default, repr=not secret, metadata=meta)


def read_file(path: str | Path) -> dict:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a dict."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark (files saved on Windows) is dropped
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'} ({e})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: Sequence[str]) -> dict:
    """`["a.b=1", "c=[x, y]"]` → nested dict; values are YAML scalars/lists."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return out


def merge(base: Mapping, extra: Mapping) -> dict:
    """Deep merge: sections merge, values replace."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def from_dict(cls: type[C], data: Mapping, *, where: str = "") -> C:
    """Build dataclass `cls` from `data`, checking every key and type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {_join(where, unknown[0])!r}{hint}; "
                          f"known: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def load_config(cls: type[C], files: Sequence[str | Path] = (), overrides: Sequence[str] = (),
                base: Mapping | None = None, section: str | None = None, flags: Mapping | None = None) -> C:
    """Defaults ← `base` ← each file (its `section` if given) ← `flags` ← `--set` overrides, into `cls`.

    `flags` are the command-line options the user gave (None values dropped), so a flag wins over a
    config file and `--set` wins over both.
    """
    data: dict = dict(base or {})
    for f in files:
        content = read_file(f)
        if section is not None:
            content = content.get(section, {})
        data = merge(data, content)
    data = merge(data, {k: v for k, v in (flags or {}).items() if v is not None})
    data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def to_dict(obj: Any) -> Any:
    """A config as JSON-ready plain data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def describe(cls: type) -> list[tuple[str, str, Any]]:
    """(name, doc, default) for each field, for help texts and commented config files."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        doc, names = f.metadata.get("doc", ""), f.metadata.get("names")
        out.append((f.name, doc.replace("{names}", ", ".join(names())) if names else doc, default))
    return out


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
