"""Teleoperation settings: which device, how its axes become a twist, and the safety limits.

Loaded like every other config (typed dataclass, unknown keys and wrong types are errors that
name the key and the file)::

    config = load_teleop_config("my_teleop.yaml", overrides={"device": "gamepad"})

The device name itself is checked when the device is made
(:func:`~robot_rl.teleop.registry.make_teleop_device`, whose error lists the available
devices), because devices can be registered at run time and by entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

from robot_rl.config import CheckedConfig, ConfigError, bounded, deep_merge, from_dict, read_yaml
from robot_rl.envs.config import TransportConfig
from robot_rl.teleop.device import AXES


@dataclass(frozen=True)
class VirtualOperatorConfig(CheckedConfig):
    """The ``virtual`` device: a scripted operator that watches the policy and takes over the way
    people do (:mod:`robot_rl.teleop.virtual`). Steps are control steps."""

    stuck_steps: int = bounded(5, ge=1)  # k: no progress towards the goal for this many steps → take over
    progress_tolerance: float = bounded(0.005, ge=0)  # m: what counts as progress on the goal distance
    done_distance: float = bounded(0.04, ge=0)  # m: a goal distance this small is never "stuck" (task solved)
    workspace_margin: float = bounded(0.02, ge=0)  # m: a tool target this close to the box's walls is "heading out"
    reaction_delay: int = bounded(2, ge=0)  # steps between deciding to take over and taking over
    control_steps: int = bounded(40, ge=1)  # m: steps of its own control before it lets go
    budget: float = bounded(0.15, ge=0, le=1)  # largest fraction of all steps it may drive
    noise: float = bounded(0.1, ge=0)  # std of Gaussian noise on its twist, as a fraction of linear_speed
    seed: int = bounded(0, ge=0)  # of the noise


@dataclass(frozen=True)
class TeleopConfig(CheckedConfig):
    """How a teleoperation device drives the arm.

    Axis settings apply to every device in the same order: ``deadband`` on the device's
    normalised axes (``[-1, 1]``), then ``invert``, then ``linear_speed`` / ``angular_speed``
    (the speed at full deflection) times the per-axis ``scale``; see
    :func:`~robot_rl.teleop.device.shape_twist`. Twist topics carry speeds already: for them
    ``linear_speed`` / ``angular_speed`` are the largest accepted speeds (faster is a fault that
    holds the arm) and no deadband applies.
    """

    device: str = "keyboard"  # a registered device: keyboard, gamepad, spacemouse, joy, twist, twist_stamped
    linear_speed: float = bounded(0.15, gt=0)  # m/s at full deflection
    angular_speed: float = bounded(0.8, gt=0)  # rad/s at full deflection
    # Per-axis multipliers, order x y z roll pitch yaw (0 switches an axis off).
    scale: tuple[float, float, float, float, float, float] = bounded((1.0,) * 6, ge=0)
    invert: tuple[str, ...] = ()  # axes whose sign flips, e.g. [y, yaw]
    deadband: float = bounded(0.1, ge=0, lt=1)  # of the normalised axis range
    frame: Literal["base", "tool"] = "base"  # the frame the twist is given in
    # "" = the device's default mapping; else a built-in mapping name (robot_rl.teleop.mapping.BUILTIN)
    # or a YAML mapping file. Devices without axis mappings (keyboard, twist topics) refuse one.
    mapping: str = ""
    silence_timeout: float = bounded(0.3, gt=0)  # s without fresh input before the arm holds
    gripper_rate: float = bounded(4.0, gt=0)  # gripper command units per s (2 units = full stroke)
    topic: str = ""  # joy / twist devices: ROS 2 topic ("" = the device's default)
    device_index: int = bounded(0, ge=0)  # which gamepad / SpaceMouse when several are plugged in
    transport: TransportConfig = field(default_factory=TransportConfig)  # joy / twist devices
    virtual: VirtualOperatorConfig = field(default_factory=VirtualOperatorConfig)  # the virtual device

    #: Whether ``device: ""`` (no device) is allowed: in a training run's ``teleop`` section.
    optional_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.device and not self.optional_device:
            raise ConfigError("device: must name a teleop device, got ''")
        unknown = [name for name in self.invert if name not in AXES]
        if unknown:
            raise ConfigError(f"invert: unknown axis {unknown[0]!r}; axes are {', '.join(AXES)}")


def load_teleop_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TeleopConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (a nested dict, e.g.
    from ``--set``); errors name the key and the file or ``--set``."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        data = read_yaml(path)
        source = str(path)
        from_dict(TeleopConfig, data, source)  # so an error names the file, not the overrides
    if overrides:
        data = deep_merge(data, overrides)
        source = "--set"
    return from_dict(TeleopConfig, data, source)
