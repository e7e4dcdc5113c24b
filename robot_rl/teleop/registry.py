"""Teleop device kinds: how ``TeleopConfig.device`` becomes a :class:`TeleopDevice`.

Like robot kinds (:mod:`robot_rl.envs.robots`), a device kind is a name and a factory
``(TeleopConfig) -> TeleopDevice``, found in two places:

* :func:`register_teleop_device`, called by any code before the device is made. The core's own
  backends (``keyboard``, ``gamepad``, ``spacemouse``) are registered when
  :mod:`robot_rl.teleop` is imported; their third-party libraries (PySDL2, hidapi) are imported
  only when such a device is made;
* the ``robot_rl.teleop_devices`` entry-point group, loaded the first time an unregistered name is
  asked for. That is how ``robot_rl.hardware`` adds the ROS 2 devices (``joy``, ``twist``,
  ``twist_stamped``) without the core importing DDS or rclpy::

      [project.entry-points."robot_rl.teleop_devices"]
      joy = "robot_rl.hardware.teleop_topics:make_joy_device"
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Callable

from robot_rl.config import ConfigError
from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import TeleopDevice

DeviceFactory = Callable[[TeleopConfig], TeleopDevice]

#: Entry-point group scanned for device kinds (name = device, value = ``module:factory``).
ENTRY_POINT_GROUP = "robot_rl.teleop_devices"

_factories: dict[str, DeviceFactory] = {}
_lock = threading.Lock()


def register_teleop_device(name: str, factory: DeviceFactory, *, replace: bool = False) -> None:
    """Make ``TeleopConfig(device=name)`` build devices with ``factory(config)``.

    Raises:
        ValueError: ``name`` is empty, ``factory`` is not callable, or ``name`` is registered
            with another factory and ``replace`` is False.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"teleop device name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"teleop device {name!r}: factory must be callable (TeleopConfig) -> TeleopDevice")
    with _lock:
        current = _factories.get(name)
        if current is not None and current is not factory and not replace:
            raise ValueError(f"teleop device {name!r} is already registered; pass replace=True to override it")
        _factories[name] = factory


def unregister_teleop_device(name: str) -> None:
    """Forget a registered device (an entry point of that name is loaded again when asked for)."""
    with _lock:
        _factories.pop(name, None)


def teleop_devices() -> tuple[str, ...]:
    """Every device name that can be made (registered or advertised by an entry point), sorted."""
    with _lock:
        registered = set(_factories)
    return tuple(sorted(registered | {ep.name for ep in _entry_points()}))


def teleop_device_factory(name: str) -> DeviceFactory:
    """The factory of device ``name``, loading its entry point if needed.

    Raises:
        ConfigError: no such device (the message lists the available ones), or its entry point
            could not be imported (the message names it and the import error).
    """
    with _lock:
        factory = _factories.get(name)
    if factory is not None:
        return factory
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        raise ConfigError(f"teleop.device: unknown teleop device {name!r}; available devices: "
                          f"{', '.join(teleop_devices()) or 'none'} (register one with "
                          f"robot_rl.teleop.register_teleop_device or the {ENTRY_POINT_GROUP!r} entry-point group)")
    try:
        loaded = matches[0].load()
    except ImportError as exc:
        raise ConfigError(f"teleop.device: teleop device {name!r} ({matches[0].value}) could not be loaded: "
                          f"{type(exc).__name__}: {exc}") from exc
    register_teleop_device(name, loaded)
    return teleop_device_factory(name)


def make_teleop_device(config: TeleopConfig) -> TeleopDevice:
    """Build the device ``config.device`` names (see the module docstring)."""
    return teleop_device_factory(config.device)(config)


def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))
