"""Typed YAML configuration.

Configs are plain dataclasses. :func:`load_dataclass` turns a YAML mapping into one, checking
every key and type, and errors name the offending key *and* the file it came from, e.g.
``ConfigError: tasks/reach.yaml: control.pos_scale: expected float, got str ('fast')``.
``--set a.b=c`` overrides are parsed with YAML scalar rules (:func:`parse_overrides`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def _describe(value: Any) -> str:
    return f"{type(value).__name__} ({value!r})"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation`` and return it converted (ints widen to floats,
    lists become tuples where the field is a tuple)."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {annotation}, got {_describe(value)}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: expected one of {choices}, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        return _build(annotation, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        key_type, value_type = args or (Any, Any)
        return {
            _coerce(k, key_type, where): _coerce(v, value_type, f"{where}.{k}")
            for k, v in value.items()
        }
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {_describe(value)}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {_describe(value)}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} at {where}")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key (valid keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str = "<config>") -> T:
    """Build dataclass ``cls`` from ``data``; errors are prefixed with ``source``."""
    try:
        return _build(cls, data or {}, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass → plain YAML-safe dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a syntax error or a non-mapping document names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_layers(cls: type, layers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Deep-merge ``(source, mapping)`` layers in order, validating against dataclass ``cls`` as
    each one enters, so an unknown key or a wrong type names the file (or ``--set``) that
    introduced it."""
    merged: dict[str, Any] = {}
    for source, layer in layers:
        merged = deep_merge(merged, layer)
        from_dict(cls, merged, source)
    return merged


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]"]`` → ``{"a": {"b": 3}, "c": [1, 2]}`` (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. task.reward_type=sparse")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {assignment!r}: invalid value: {exc}") from None
        node = tree
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {assignment!r}: empty key segment in {key!r}")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {assignment!r}: {'.'.join(parts[:depth + 1])} is set both as a value and a section")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"--set {assignment!r}: {key} is set both as a value and a section")
        node[parts[-1]] = value
    return tree
