"""Robot kinds: how ``robot.kind`` in the env config becomes a :class:`~robot_rl.robot.Robot`.

A kind is a name and a factory ``(EnvConfig) -> Robot``. Kinds come from two places:

* :func:`register_robot_kind`, called by any code before the env is made (a test, a script, a
  plugin module)::

      register_robot_kind("twin_with_gap", lambda config: GappedArm(SimArm(...)))
      env = gymnasium.make("RobotRL/ArmReach-v0", robot="twin_with_gap")

* the ``robot_rl.robots`` entry-point group of any installed distribution, loaded the first time
  an unregistered kind is asked for. robot_rl's own ``pyproject.toml`` declares::

      [project.entry-points."robot_rl.robots"]
      sim = "robot_rl.sim.sim_arm:make_sim_arm"          # MuJoCo, in process
      ros2 = "robot_rl.hardware.ros2_arm:make_ros2_arm"  # a client of `robot-rl bridge`

So the core names no robot implementation: ``import robot_rl`` loads neither MuJoCo nor ROS 2 /
DDS, and the simulator or the ROS 2 client is imported only when an env of that kind is made.
A new kind (another arm, a twin with a reality gap, a teleop-only source) is added by
registering it; ``ArmEnv`` is not edited. (After adding an entry point to a ``pyproject.toml``,
re-install the distribution, e.g. ``pip install -e . --no-deps``, so its metadata lists it.)
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Callable

from robot_rl.config import ConfigError
from robot_rl.envs.config import EnvConfig
from robot_rl.robot import Robot

RobotFactory = Callable[[EnvConfig], Robot]

#: Entry-point group scanned for robot kinds (name = kind, value = ``module:factory``).
ENTRY_POINT_GROUP = "robot_rl.robots"

_factories: dict[str, RobotFactory] = {}
_lock = threading.Lock()


def register_robot_kind(kind: str, factory: RobotFactory, *, replace: bool = False) -> None:
    """Make ``robot.kind = kind`` build robots with ``factory(env_config)``.

    Raises:
        ValueError: ``kind`` is empty or not a string, ``factory`` is not callable, or ``kind``
            is already registered with another factory and ``replace`` is False.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"robot kind must be a non-empty string, got {kind!r}")
    if not callable(factory):
        raise ValueError(f"robot kind {kind!r}: factory must be callable (EnvConfig) -> Robot, got {factory!r}")
    with _lock:
        current = _factories.get(kind)
        if current is not None and current is not factory and not replace:
            raise ValueError(f"robot kind {kind!r} is already registered ({_describe(current)}); "
                             f"pass replace=True to override it")
        _factories[kind] = factory


def unregister_robot_kind(kind: str) -> None:
    """Forget a registered kind (an entry point of that name is loaded again when next asked for)."""
    with _lock:
        _factories.pop(kind, None)


def robot_kinds() -> tuple[str, ...]:
    """Every kind that can be made: registered ones and those advertised by entry points (not
    loaded by this call), sorted."""
    with _lock:
        registered = set(_factories)
    return tuple(sorted(registered | {ep.name for ep in _entry_points()}))


def robot_factory(kind: str) -> RobotFactory:
    """The factory of ``kind``, loading its entry point if it is not registered yet.

    Raises:
        ConfigError: no such kind (the message lists the available ones), or its entry point
            could not be loaded (the message names it and the import error).
    """
    with _lock:
        factory = _factories.get(kind)
    if factory is not None:
        return factory
    matches = [ep for ep in _entry_points() if ep.name == kind]
    if not matches:
        available = ", ".join(robot_kinds()) or "none"
        raise ConfigError(f"robot.kind: unknown robot kind {kind!r}; available kinds: {available} "
                          f"(register one with robot_rl.envs.register_robot_kind or the "
                          f"{ENTRY_POINT_GROUP!r} entry-point group)")
    entry_point = matches[0]
    try:
        loaded = entry_point.load()
    except ImportError as exc:
        raise ConfigError(f"robot.kind: robot kind {kind!r} ({entry_point.value}) could not be loaded: "
                          f"{type(exc).__name__}: {exc}") from exc
    register_robot_kind(kind, loaded)
    return robot_factory(kind)  # the registered one (another thread may have won the race)


def make_robot(config: EnvConfig) -> Robot:
    """Build the robot named by ``config.robot.kind`` (see the module docstring)."""
    return robot_factory(config.robot.kind)(config)


def requested_cameras(config: EnvConfig) -> dict[str, tuple[int, int]]:
    """Camera name → (height, width) the env observes (empty when ``observation.images`` is off):
    what a factory passes to a robot that fills ``RobotState.images``."""
    obs = config.observation
    return {camera: (obs.image_height, obs.image_width) for camera in obs.cameras} if obs.images else {}


def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _describe(factory: RobotFactory) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
