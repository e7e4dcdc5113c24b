"""Typed YAML configuration.

Configs are plain dataclasses. :func:`load_dataclass` turns a YAML mapping into one, checking
every key and type, and errors name the offending key *and* the file it came from, e.g.
``ConfigError: tasks/reach.yaml: control.pos_scale: expected float, got str ('fast')``.
``--set a.b=c`` overrides are parsed with YAML scalar rules (:func:`parse_overrides`).

Values are checked as completely as types allow before any work starts: every float must be
finite (YAML's ``.nan`` and ``.inf`` are rejected on load), and a numeric field declared with
:func:`bounded` must lie in its range, e.g. ``actor_lr: float = bounded(3e-4, gt=0)`` or
``hidden_sizes: tuple[int, ...] = bounded((256, 256), ge=1)`` (each item). Config classes
derive from :class:`CheckedConfig`, whose ``__post_init__`` runs those checks, so a config
built in Python is checked like one loaded from YAML. Rules that relate several fields stay in
the class's own ``__post_init__`` (after ``super().__post_init__()``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


class FieldError(ConfigError):
    """One field's value is out of range; :func:`from_dict` prefixes ``key`` with the path of its
    section, so the message reads ``agent.actor_lr: must be > 0, got -1.0``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: bounds, each inclusive or exclusive (None: open)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        # Written as positive conditions so that NaN, which compares False, never passes.
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        bounds = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A dataclass field whose value (or, for a tuple, each item) must lie in the given bounds,
    checked by :class:`CheckedConfig`: ``bounded(3e-4, gt=0)``, ``bounded(0.99, gt=0, le=1)``."""
    return dataclasses.field(default=default, metadata={"range": Range(ge, gt, le, lt)})


def check_fields(config: Any) -> None:
    """Raise :class:`FieldError` for the first field of dataclass ``config`` whose value is a
    non-finite float or lies outside its :func:`bounded` range (tuples: item by item)."""
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        items = list(enumerate(value)) if isinstance(value, tuple) else [(None, value)]
        bounds: Range | None = spec.metadata.get("range")
        for index, item in items:
            key = spec.name if index is None else f"{spec.name}[{index}]"
            if isinstance(item, float) and not math.isfinite(item):
                raise FieldError(key, f"must be a finite number, got {item!r}")
            if bounds is not None and isinstance(item, (int, float)) and not isinstance(item, bool) \
                    and not bounds.contains(item):
                raise FieldError(key, f"must be {bounds}, got {item!r}")


class CheckedConfig:
    """Base of config dataclasses: on construction, every field is checked by :func:`check_fields`.
    A subclass with cross-field rules defines ``__post_init__`` and calls ``super().__post_init__()``
    first."""

    def __post_init__(self) -> None:
        check_fields(self)


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
        if not math.isfinite(value):  # YAML's .nan / .inf: no setting means "not a number"
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
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
    except FieldError as exc:
        raise FieldError(f"{where}.{exc.key}" if where else exc.key, exc.problem) from None
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
