"""``SupervisedArm``: the MuJoCo arm behind the arm bridge's safety supervisor, in process.

A policy deployed through ``robot-rl bridge`` (the twin or a real arm) never drives the arm
directly: every command passes :class:`~robot_rl.hardware.safety.SafetySupervisor` at the
bridge's tick rate, which rate-limits the tool target, the joints and, above all, the gripper
(0.2 m/s of opening by default: 0.4 s to close from fully open). A policy trained on the bare
simulator, where the gripper target jumps at once, learns to lift the instant it closes and fails
behind the bridge (measured on lift: 1.0 in process, 0.3 over the plain sim bridge).

``robot.sim.supervised: true`` trains behind the same supervisor with the bridge's default limits
(``robot_rl.hardware.safety.SafetyConfig``, workspace from ``env.control``): ``advance`` runs
supervisor ticks of ``1 / robot.sim.supervisor_hz`` s, each taking the supervisor's command for
that tick, as the bridge's loop does. Everything else (state, cameras, randomisable physics)
is the wrapped :class:`~robot_rl.sim.SimArm`'s.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from robot_rl.hardware.safety import SafetyConfig, SafetySupervisor
from robot_rl.robot import Command, ResetRequest, RobotState


class SupervisedArm:
    """A :class:`~robot_rl.sim.SimArm` whose commands go through a :class:`SafetySupervisor`
    ticking at ``tick_hz`` (module docstring). Attributes not defined here are the arm's."""

    def __init__(self, arm: Any, safety: SafetyConfig, tick_hz: float) -> None:
        self.arm = arm
        self.spec = arm.spec
        self.tick = 1.0 / tick_hz
        self.supervisor = SafetySupervisor(arm.spec, safety, arm.tool_position, log_events=False)

    def reset(self, request: ResetRequest) -> RobotState:
        state = self.arm.reset(request)
        self.supervisor.reset(state)  # hold the start pose until the first command
        self.supervisor.drain_events()
        return state

    def command(self, command: Command) -> None:
        if not self.supervisor.submit(command, self.arm.read_state().timestamp):
            events = self.supervisor.drain_events()
            raise ValueError(events[-1].detail if events else f"command refused: {command}")

    def advance(self, duration: float) -> RobotState:
        ticks = max(1, math.ceil(duration / self.tick - 1e-9))
        state = self.arm.read_state()
        for _ in range(ticks):
            self.arm.command(self.supervisor.command_for_tick(state, state.timestamp, 0.0, duration / ticks))
            state = self.arm.advance(duration / ticks)
        self.supervisor.drain_events()  # rate limiting is the point here, not an incident to report
        return state

    def read_state(self) -> RobotState:
        return self.arm.read_state()

    def stop(self) -> None:
        self.arm.stop()
        self.supervisor.reset(self.arm.read_state())

    def close(self) -> None:
        self.arm.close()

    def __getattr__(self, name: str) -> Any:  # cameras, dynamics, tool_position, the model ...
        return getattr(self.arm, name)


def supervised(arm: Any, workspace: tuple[np.ndarray, np.ndarray], tick_hz: float) -> SupervisedArm:
    """``arm`` behind the bridge's default safety limits, with ``workspace`` as the tool box."""
    safety = replace(SafetyConfig(), workspace_low=tuple(map(float, workspace[0])),
                     workspace_high=tuple(map(float, workspace[1])))
    return SupervisedArm(arm, safety, tick_hz)
