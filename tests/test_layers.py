"""Dependencies point one way: the core (``robot_rl`` minus ``cli`` and ``bench``) imports neither
``robot_rl.sim`` nor ``robot_rl.hardware`` (nor MuJoCo, rclpy or cyclonedds), not at module level
and not lazily inside functions. Checked twice: by importing every core module in a fresh
interpreter, and by reading every core source file's imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import robot_rl

CORE_ROOT = Path(robot_rl.__file__).parent
NOT_CORE = ("robot_rl.cli", "robot_rl.bench", "robot_rl.sim", "robot_rl.hardware")
FORBIDDEN = ("robot_rl.sim", "robot_rl.hardware", "mujoco", "rclpy", "cyclonedds")

# Runs in a fresh interpreter: imports every core module (packages are recursed into by listing
# their directory, never by importing a non-core package) and reports what got loaded.
IMPORT_ALL = r"""
import importlib, json, pkgutil, sys

NOT_CORE, FORBIDDEN = json.loads(sys.argv[1])
excluded = lambda name: any(name == p or name.startswith(p + ".") for p in NOT_CORE)
imported = []

def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if excluded(info.name):
            continue
        module = importlib.import_module(info.name)
        imported.append(info.name)
        if info.ispkg:
            walk(module)

import robot_rl
walk(robot_rl)
loaded = sorted(name for name in sys.modules if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))
print(json.dumps({"imported": imported, "forbidden_loaded": loaded}))
"""


def test_core_modules_import_no_simulator_ros_or_dds():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, json.dumps([NOT_CORE, FORBIDDEN])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The walk did reach the whole core (a broken walk would pass vacuously).
    for module in ("robot_rl.robot", "robot_rl.envs.arm_env", "robot_rl.envs.robots", "robot_rl.envs.experts",
                   "robot_rl.agents.sac", "robot_rl.data.store", "robot_rl.training.loop",
                   "robot_rl.teleop.source", "robot_rl.teleop.gamepad", "robot_rl.teleop.spacemouse"):
        assert module in report["imported"], module
    assert not any(name.startswith(NOT_CORE) for name in report["imported"])
    assert report["forbidden_loaded"] == [], f"core modules loaded {report['forbidden_loaded']}"


# --------------------------------------------------------------------------- static check
def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def forbidden_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``"line: name"`` for every import (anywhere in the file, including function bodies and
    ``importlib.import_module("...")``/``__import__("...")`` with a literal name) of a
    FORBIDDEN module."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def check(name: str, line: int) -> None:
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            found.append(f"{line}: {name}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            check(base, node.lineno)
            for alias in node.names:
                check(f"{base}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                check(node.args[0].value, node.lineno)
    return found


def core_files() -> list[Path]:
    skip = [CORE_ROOT / name.split(".", 1)[1] for name in NOT_CORE]
    return sorted(path for path in CORE_ROOT.rglob("*.py")
                  if not any(path.is_relative_to(directory) for directory in skip))


def test_no_core_source_file_imports_sim_hardware_or_ros():
    files = core_files()
    assert CORE_ROOT / "envs" / "arm_env.py" in files and CORE_ROOT / "robot.py" in files
    assert not any(path.relative_to(CORE_ROOT).parts[0] in ("cli", "bench") for path in files)
    problems = {}
    for path in files:
        found = forbidden_imports(path.read_text(), _module_name(path), path.name == "__init__.py")
        if found:
            problems[str(path.relative_to(CORE_ROOT.parent))] = found
    assert problems == {}, f"core files import the simulator / hardware / ROS: {problems}"


@pytest.mark.parametrize("source", [
    "import mujoco",
    "import robot_rl.sim.sim_arm as s",
    "from robot_rl import hardware",
    "from robot_rl.hardware.transport import TransportConfig",
    "def f():\n    from robot_rl.sim import SimArm\n",
    "class A:\n    def m(self):\n        import rclpy\n",
    "import importlib\nimportlib.import_module('cyclonedds.domain')",
    "from .. import sim",  # in robot_rl.envs.x: robot_rl.sim
    "from ..hardware.ros2_arm import Ros2Arm",
])
def test_static_check_catches_every_import_form(source):
    assert forbidden_imports(source, "robot_rl.envs.example"), source


@pytest.mark.parametrize("source", [
    "import numpy",
    "from robot_rl.envs.config import TransportConfig",
    "from . import tasks",
    "from robot_rl import robot",
    "x = 'robot_rl.sim'  # a string is not an import",
])
def test_static_check_passes_core_imports(source):
    assert forbidden_imports(source, "robot_rl.envs.example") == [], source
