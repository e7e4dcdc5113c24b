"""The ROS 2 launch files: valid Python everywhere; loadable (every argument declared, the
commands they start accepted by the robot-rl CLI) where ROS 2's ``launch`` package exists.
Without ROS 2, their declared defaults are read from the source (ast) and their commands and
environments are built with a minimal stand-in for the ``launch`` package: loopback by default,
DDS Security enforced when asked for.

On a ROS 2 machine: ``source /opt/ros/humble/setup.bash && python -m pytest tests/test_launch.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

LAUNCH_FILES = sorted((Path(__file__).parents[1] / "launch").glob("*.launch.py"))
#: Launch arguments every file declares for the DDS exposure, with their defaults.
NETWORK_DEFAULTS = {"network": "loopback", "interface": "", "domain_id": "0", "security": "false", "keystore": "",
                    "backend": "rclpy"}


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


def declared_arguments(path: Path) -> dict[str, str | None]:
    """``DeclareLaunchArgument(name, default_value=...)`` calls in ``path`` → {name: default}."""
    found: dict[str, str | None] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            defaults = [k.value for k in node.keywords if k.arg == "default_value"]
            found[ast.literal_eval(node.args[0])] = ast.literal_eval(defaults[0]) if defaults else None
    return found


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_default_to_loopback_without_security_opt_outs(path):
    declared = declared_arguments(path)
    assert {name: declared.get(name) for name in NETWORK_DEFAULTS} == NETWORK_DEFAULTS
    assert declared["enclave"].startswith("/robot_rl/")
    assert '"system"' not in path.read_text()  # no hard-coded --network system any more


class _Entity:
    """Stand-in for a ``launch`` action or substitution: keeps its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class _Configuration(_Entity):
    def perform(self, context: dict[str, str]) -> str:
        return context[self.args[0]]


@pytest.fixture
def fake_launch(monkeypatch):
    """A minimal ``launch`` package (the real one comes with ROS 2) for loading the files."""
    modules = {name: types.ModuleType(name) for name in ("launch", "launch.actions", "launch.substitutions")}
    modules["launch"].LaunchDescription = list
    for name in ("DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction"):
        setattr(modules["launch.actions"], name, type(name, (_Entity,), {}))
    modules["launch.substitutions"].LaunchConfiguration = _Configuration
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def launched(path: Path, **arguments: str) -> list[dict[str, Any]]:
    """The processes ``path`` starts with its defaults overridden by ``arguments``: cmd and env."""
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_") + "_fake", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    context = {e.args[0]: e.kwargs.get("default_value", "") for e in entities
               if type(e).__name__ == "DeclareLaunchArgument"}
    context.update(config="hardware/configs/ur5e.yaml", **arguments)
    processes = [p for e in entities if type(e).__name__ == "OpaqueFunction" for p in e.kwargs["function"](context)]
    return [{"cmd": p.kwargs["cmd"], "env": p.kwargs.get("additional_env", {})} for p in processes]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launched_processes_stay_on_loopback_by_default(fake_launch, path):
    from robot_rl.cli import build_parser

    for process in launched(path):
        args = build_parser().parse_args(process["cmd"][1:])
        if process["cmd"][1] == "bridge":
            assert (args.network, args.domain_id) == ("loopback", 0)
        else:
            assert "env.robot.ros2.transport.network=loopback" in process["cmd"]
        assert process["env"] == {"ROS_DOMAIN_ID": "0"}  # no CYCLONEDDS_URI, no security settings


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_network_interface_domain_and_enforced_security_from_arguments(fake_launch, path, tmp_path):
    processes = launched(path, network="system", interface="eth1", domain_id="42", security="true",
                         keystore=str(tmp_path))
    enclaves = set()
    for process in processes:
        env = process["env"]
        assert "--network" not in process["cmd"] or process["cmd"][process["cmd"].index("--network") + 1] == "system"
        assert env["ROS_DOMAIN_ID"] == "42" and 'name="eth1"' in env["CYCLONEDDS_URI"]
        assert (env["ROS_SECURITY_ENABLE"], env["ROS_SECURITY_STRATEGY"]) == ("true", "Enforce")
        assert env["ROS_SECURITY_KEYSTORE"] == str(tmp_path)
        enclaves.add(env["ROS_SECURITY_ENCLAVE_OVERRIDE"])
    assert len(enclaves) == len(processes)  # one enclave per process


@pytest.mark.parametrize("arguments, words", [
    ({"interface": "eth1"}, ["interface", "network:=system"]),
    ({"security": "true"}, ["keystore"]),
    ({"security": "yes"}, ["security", "true or false"]),
    ({"estop_release_from_topic": "true"}, ["estop_release_from_topic", "security:=true"]),
])
def test_unsafe_or_malformed_arguments_are_refused(fake_launch, arguments, words):
    with pytest.raises(ValueError) as info:
        launched(Path(__file__).parents[1] / "launch" / "arm_bridge.launch.py", **arguments)
    for word in words:
        assert word in str(info.value)


def test_topic_release_of_the_estop_only_with_security(fake_launch, tmp_path):
    (process,) = launched(Path(__file__).parents[1] / "launch" / "arm_bridge.launch.py", security="true",
                          keystore=str(tmp_path), estop_release_from_topic="true")
    assert process["cmd"][-2:] == ["--set", "estop.release_from_topic=true"]


def test_sim_bridge_serves_a_twin_faster_than_real_time_when_asked(fake_launch):
    from robot_rl.cli import build_parser

    sim_bridge = next(path for path in LAUNCH_FILES if path.name == "sim_bridge.launch.py")
    (plain,) = launched(sim_bridge)
    args = build_parser().parse_args(plain["cmd"][1:])
    assert (args.twin, args.time_scale) == (None, None)
    (twin,) = launched(sim_bridge, twin="default", time_scale="4")
    args = build_parser().parse_args(twin["cmd"][1:])
    assert (args.twin, args.time_scale) == ("default", 4.0)
