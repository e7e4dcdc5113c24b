"""The ROS 2 launch files: valid Python everywhere; loadable (every argument declared, the
commands they start accepted by the robot-rl CLI) where ROS 2's ``launch`` package exists.

On a ROS 2 machine: ``source /opt/ros/humble/setup.bash && python -m pytest tests/test_launch.py``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

LAUNCH_FILES = sorted((Path(__file__).parents[1] / "launch").glob("*.launch.py"))


def test_there_are_launch_files_for_the_sim_bridge_a_real_arm_and_training():
    assert {path.name for path in LAUNCH_FILES} == {"sim_bridge.launch.py", "arm_bridge.launch.py",
                                                    "sim_train.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_valid_python_with_a_launch_description(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_loads_and_its_commands_parse(path):
    pytest.importorskip("launch.actions")  # (a bare "launch" would find this repo's launch/ directory)
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from robot_rl.cli import build_parser

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = (
                "hardware/configs/ur5e.yaml" if entity.name == "config" else
                "".join(s.perform(context) for s in entity.default_value))
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            for process in entity.execute(context):
                command = [part.perform(context) if hasattr(part, "perform") else str(part)
                           for part in process.cmd]
                assert command[0] == "robot-rl"
                build_parser().parse_args([str(c) for c in command[1:]])
