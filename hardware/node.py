"""Assemble and run an arm bridge node: the simulated arm, its reality-gap twin
(:mod:`robot_rl.hardware.twin`) or a real ros2_control arm.

``robot-rl bridge`` and the launch files in ``launch/`` call :func:`serve`.
"""

from __future__ import annotations

import copy
import logging
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from robot_rl.config import ConfigError, from_dict, merge_layers, read_yaml
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig, BridgeStats
from robot_rl.hardware.estop import LocalEstopServer, control_socket_path
from robot_rl.hardware.transport import make_transport

if TYPE_CHECKING:  # the twin imports MuJoCo; a real arm's bridge never loads it
    from robot_rl.hardware.twin import TwinProfile

log = logging.getLogger(__name__)


def load_bridge_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                       robot: str = "sim", twin: TwinProfile | None = None) -> BridgeConfig:
    """Defaults ← a hardware arm file's ``safety`` section (``robot`` other than ``sim``) or a twin
    profile's ``bridge`` section ← optional bridge YAML ← ``--set``-style overrides, validated
    (errors name key and file).

    For a real arm the result must also stay within the arm file's ``safety_maxima``: the layers
    may tighten the arm's limits, never loosen them past its maxima. A simulation run faster or
    slower than real time (``time_scale`` not 1) publishes ``/clock`` unless a layer says
    otherwise: its clients cannot follow it on their own wall clock."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if robot != "sim":
        layers.append((robot, {"safety": read_yaml(robot).get("safety", {})}))
    if twin is not None:
        layers.append((f"twin profile {twin.name!r} (bridge section)", twin.bridge))
    if path is not None:
        layers.append((str(path), read_yaml(path)))
    if overrides:
        layers.append(("overrides", overrides))
    merged = merge_layers(BridgeConfig, layers)
    if robot == "sim" and "publish_clock" not in merged and merged.get("time_scale", 1.0) != 1.0:
        merged["publish_clock"] = True
    config = from_dict(BridgeConfig, merged, "bridge config")
    if robot != "sim":
        _check_arm_maxima(config, robot)
    return config


def _check_arm_maxima(config: BridgeConfig, robot: str) -> None:
    """The layered safety limits within the maxima of the arm described by the YAML ``robot``."""
    from robot_rl.hardware.arm_config import load_arm_config

    arm = load_arm_config(robot)
    try:
        config.safety.check_within(arm.safety_maxima, arm.name)
    except ConfigError as exc:
        raise ConfigError(f"bridge config over {robot} (safety_maxima there): {exc}") from None


def _sim_bridge(task: str, config: BridgeConfig, stack: ExitStack, twin: TwinProfile | None = None) -> ArmBridge:
    from robot_rl.envs.config import load_env_config
    from robot_rl.sim import SimArm

    env_config = load_env_config(task)
    workspace = (np.array(config.safety.workspace_low), np.array(config.safety.workspace_high))
    sim = SimArm(scene=task, config=env_config.robot.sim, workspace=workspace)
    stack.callback(sim.close)
    unknown = sorted(set(config.cameras) - set(sim.spec.cameras))
    if unknown:
        raise ConfigError(f"cameras: the simulated arm has no camera {unknown[0]!r} "
                          f"(it has {', '.join(sim.spec.cameras)})")
    arm: Any = sim
    if twin is not None:
        from robot_rl.hardware.twin import TwinArm

        arm = TwinArm(sim, twin, time_scale=config.time_scale if config.real_time else None)
    transport = make_transport(config.transport)
    stack.callback(transport.close)
    # The cameras render the sim's state: the twin's gap is in its measurements, not its scene.
    return ArmBridge(arm, transport, config, tool_position=arm.tool_position,
                     frames=SimFrames(sim) if config.cameras else None)


class SimFrames:
    """Camera images of a :class:`~robot_rl.sim.SimArm` for the bridge's camera thread
    (a :class:`~robot_rl.hardware.bridge.FrameSource`).

    ``snapshot`` (loop thread, which owns the arm) copies the arm's MuJoCo integration state
    with ``mj_getState`` (~2 µs: time, qpos, qvel, act, ctrl, mocap poses, ...). ``render``
    (camera thread) loads a snapshot into a private ``MjData`` of a private copy of the model,
    runs ``mj_forward`` once per snapshot (~30 µs) and renders without shadows, with renderers
    made on that thread. The camera thread never touches the arm's ``MjModel``/``MjData``, so
    no lock is needed and the loop never waits for it. (The bridge does not change the model
    while it runs; the copy is taken when the bridge starts.)
    """

    def __init__(self, arm: Any) -> None:
        import mujoco

        self._mujoco = mujoco
        self._arm_model, self._arm_data = arm.model, arm.data
        self._what = mujoco.mjtState.mjSTATE_INTEGRATION
        self._size = mujoco.mj_stateSize(arm.model, self._what)
        self._model = copy.deepcopy(arm.model)
        self._data: Any = None
        self._shown: Any = None  # the snapshot in self._data
        self._renderers: dict[tuple[int, int], Any] = {}

    def snapshot(self) -> np.ndarray:
        state = np.empty(self._size)
        self._mujoco.mj_getState(self._arm_model, self._arm_data, state, self._what)
        return state

    def render(self, snapshot: np.ndarray, camera: str, height: int, width: int) -> np.ndarray:
        mujoco = self._mujoco
        if self._data is None:
            self._data = mujoco.MjData(self._model)
        if snapshot is not self._shown:
            mujoco.mj_setState(self._model, self._data, snapshot, self._what)
            mujoco.mj_forward(self._model, self._data)
            self._shown = snapshot
        renderer = self._renderers.get((height, width))
        if renderer is None:
            renderer = self._renderers[(height, width)] = self._make_renderer(height, width)
        renderer.update_scene(self._data, camera=camera)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False  # ~40x cheaper on a software GL
        return renderer.render()

    def _make_renderer(self, height: int, width: int) -> Any:
        from robot_rl.sim import RenderingUnavailableError

        mujoco, visual = self._mujoco, self._model.vis.global_
        visual.offheight, visual.offwidth = max(height, visual.offheight), max(width, visual.offwidth)
        try:
            return mujoco.Renderer(self._model, height, width)
        except (ImportError, OSError, RuntimeError, AttributeError, mujoco.FatalError) as exc:
            raise RenderingUnavailableError(exc) from exc

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def open_bridge(robot: str, task: str, config: BridgeConfig, stack: ExitStack,
                twin: TwinProfile | None = None) -> ArmBridge:
    """The bridge for ``robot`` (``sim``, with the reality gap of ``twin`` if given, or a hardware
    YAML); resources are released by ``stack``."""
    if robot != "sim" and twin is not None:
        raise ConfigError(f"twin profile {twin.name!r}: a twin stands in for a real arm in simulation; it needs "
                          f"robot 'sim', not {robot}")
    if robot != "sim" and config.time_scale != 1.0:
        raise ConfigError(f"bridge.time_scale: a real arm runs in real time (1.0), got {config.time_scale}")
    if robot == "sim":
        bridge = _sim_bridge(task, config, stack, twin)
    else:
        from robot_rl.hardware.ros2_control_arm import open_hardware_bridge

        bridge = open_hardware_bridge(Path(robot), config, stack)
    stack.callback(bridge.close)
    return bridge


def serve(robot: str, task: str, config: BridgeConfig, duration: float | None = None,
          on_ready: Callable[[ArmBridge], None] | None = None, twin: TwinProfile | None = None) -> BridgeStats:
    """Run a bridge until SIGINT/SIGTERM (or ``duration`` wall seconds); returns its loop statistics.
    ``twin``: serve the simulated arm with that reality gap (:mod:`robot_rl.hardware.twin`).

    The bridge also serves its local e-stop channel (a Unix socket, see
    :mod:`robot_rl.hardware.estop`): ``robot-rl bridge estop --release`` on this host reaches it."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as stack:
            bridge = open_bridge(robot, task, config, stack, twin)
            channel = LocalEstopServer(control_socket_path(config.transport, config.estop.control_socket),
                                       bridge.local_estop)
            stack.callback(channel.close)
            log.info("local e-stop channel: %s", channel.path)
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
