"""Assemble and run an arm bridge node: the simulated arm or a real ros2_control arm.

``robot-rl bridge`` and the launch files in ``launch/`` call :func:`serve`.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from robot_rl.config import ConfigError, from_dict, merge_layers, read_yaml
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig, BridgeStats
from robot_rl.hardware.transport import make_transport

log = logging.getLogger(__name__)


def load_bridge_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                       robot: str = "sim") -> BridgeConfig:
    """Defaults ← a hardware arm file's ``safety`` section (``robot`` other than ``sim``) ← optional
    bridge YAML ← ``--set``-style overrides, validated (errors name key and file)."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if robot != "sim":
        layers.append((robot, {"safety": read_yaml(robot).get("safety", {})}))
    if path is not None:
        layers.append((str(path), read_yaml(path)))
    if overrides:
        layers.append(("overrides", overrides))
    return from_dict(BridgeConfig, merge_layers(BridgeConfig, layers), "bridge config")


def _sim_bridge(task: str, config: BridgeConfig, stack: ExitStack) -> ArmBridge:
    from robot_rl.envs.config import load_env_config
    from robot_rl.sim import SimArm

    env_config = load_env_config(task)
    workspace = (np.array(config.safety.workspace_low), np.array(config.safety.workspace_high))
    arm = SimArm(scene=task, config=env_config.robot.sim, workspace=workspace)
    stack.callback(arm.close)
    unknown = sorted(set(config.cameras) - set(arm.spec.cameras))
    if unknown:
        raise ConfigError(f"cameras: the simulated arm has no camera {unknown[0]!r} "
                          f"(it has {', '.join(arm.spec.cameras)})")
    transport = make_transport(config.transport)
    stack.callback(transport.close)

    def render(camera: str, height: int, width: int) -> np.ndarray:
        return arm.render(camera, height, width, shadows=False)

    return ArmBridge(arm, transport, config, render=render)


def open_bridge(robot: str, task: str, config: BridgeConfig, stack: ExitStack) -> ArmBridge:
    """The bridge for ``robot`` (``sim`` or a hardware YAML); resources are released by ``stack``."""
    if robot == "sim":
        bridge = _sim_bridge(task, config, stack)
    else:
        from robot_rl.hardware.ros2_control_arm import open_hardware_bridge

        bridge = open_hardware_bridge(Path(robot), config, stack)
    stack.callback(bridge.close)
    return bridge


def serve(robot: str, task: str, config: BridgeConfig, duration: float | None = None,
          on_ready: Callable[[ArmBridge], None] | None = None) -> BridgeStats:
    """Run a bridge until SIGINT/SIGTERM (or ``duration`` seconds); returns its loop statistics."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as stack:
            bridge = open_bridge(robot, task, config, stack)
            if on_ready is not None:
                on_ready(bridge)
            if duration is not None:
                timer = threading.Timer(duration, stop.set)
                timer.daemon = True
                timer.start()
                stack.callback(timer.cancel)
            return bridge.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
