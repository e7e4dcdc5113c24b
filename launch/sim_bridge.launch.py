"""The MuJoCo arm as a ROS 2 node: ``ros2 launch launch/sim_bridge.launch.py task:=pick``.

Arguments: ``task`` (reach | push | pick | peg), ``namespace``, ``state_hz``, ``clock`` (publish
sim time on /clock), ``cameras`` (space-separated, e.g. ``"scene wrist"``; empty for none).
The node joins the sourced ROS 2 graph (rclpy backend, the user's DDS settings).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _bridge(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cmd = ["robot-rl", "bridge", "--robot", "sim", "--task", value("task"), "--backend", "rclpy",
           "--network", "system", "--state-hz", value("state_hz")]
    if value("namespace"):
        cmd += ["--namespace", value("namespace")]
    if value("clock").lower() == "true":
        cmd.append("--clock")
    if value("cameras").split():
        cmd += ["--cameras", *value("cameras").split()]
    return [ExecuteProcess(cmd=cmd, output="screen", name="robot_rl_sim_bridge")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="reach", description="reach | push | pick | peg"),
        DeclareLaunchArgument("namespace", default_value="", description="e.g. /arm1"),
        DeclareLaunchArgument("state_hz", default_value="500.0", description="bridge ticks per second"),
        DeclareLaunchArgument("clock", default_value="false", description="publish sim time on /clock"),
        DeclareLaunchArgument("cameras", default_value="", description='e.g. "scene wrist"'),
        OpaqueFunction(function=_bridge),
    ])
