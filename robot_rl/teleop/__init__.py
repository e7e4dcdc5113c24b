"""Teleoperation: input devices, their safety filter, and a device as a rollout action source.

* :mod:`.device`: the contract, ``TeleopDevice.poll() -> TeleopCommand`` (twist, gripper target,
  deadman, success/failure/reset, timestamp, connected);
* :mod:`.config`: :class:`TeleopConfig` (device, speeds, per-axis scale, deadband, inversion,
  frame, mapping, silence timeout, gripper rate);
* :mod:`.registry`: device kinds by name (``register_teleop_device`` or the
  ``robot_rl.teleop_devices`` entry points);
* backends: :mod:`.keyboard` (the terminal), :mod:`.gamepad` (SDL 2 via PySDL2),
  :mod:`.spacemouse` (hidapi), and, registered by ``robot_rl.hardware.teleop_topics`` through
  entry points, ROS 2 ``sensor_msgs/Joy`` (``joy``) and ``geometry_msgs/Twist`` /
  ``TwistStamped`` (``twist``, ``twist_stamped``); :mod:`.scripted` for code-driven input;
  :mod:`.virtual` (``virtual``), a scripted operator that watches a learning policy and takes
  over when it is stuck or leaving the workspace (interventions without a person);
* :mod:`.mapping`: raw axes/buttons → command, built-in mappings and YAML overrides;
* :mod:`.safety`: :class:`TeleopSafety`, deadman / silence / disconnect / bad input / gripper rules;
* :mod:`.source`: :class:`TeleopActionSource` (``source = "human"``) for ``run_episode``.

This package is core: it imports neither the simulator nor ROS 2; PySDL2 and hidapi are
imported only when a gamepad or SpaceMouse is made (``pip install 'robot_rl[teleop]'``).
"""

from robot_rl.teleop.config import TeleopConfig, load_teleop_config
from robot_rl.teleop.device import AXES, LABELS, DeviceUnavailableError, TeleopCommand, TeleopDevice, shape_twist
from robot_rl.teleop.gamepad import make_gamepad_device
from robot_rl.teleop.keyboard import make_keyboard_device
from robot_rl.teleop.registry import (
    make_teleop_device,
    register_teleop_device,
    teleop_device_factory,
    teleop_devices,
    unregister_teleop_device,
)
from robot_rl.teleop.safety import SafeCommand, TeleopEvent, TeleopSafety
from robot_rl.teleop.scripted import ScriptedDevice
from robot_rl.teleop.source import TeleopActionSource, TwistToAction
from robot_rl.teleop.spacemouse import make_spacemouse_device
from robot_rl.teleop.virtual import VirtualOperator, make_virtual_operator

register_teleop_device("keyboard", make_keyboard_device)
register_teleop_device("gamepad", make_gamepad_device)
register_teleop_device("spacemouse", make_spacemouse_device)
register_teleop_device("virtual", make_virtual_operator)

__all__ = [
    "AXES",
    "LABELS",
    "DeviceUnavailableError",
    "SafeCommand",
    "ScriptedDevice",
    "TeleopActionSource",
    "TeleopCommand",
    "TeleopConfig",
    "TeleopDevice",
    "TeleopEvent",
    "TeleopSafety",
    "TwistToAction",
    "VirtualOperator",
    "load_teleop_config",
    "make_teleop_device",
    "register_teleop_device",
    "shape_twist",
    "teleop_device_factory",
    "teleop_devices",
    "unregister_teleop_device",
]
