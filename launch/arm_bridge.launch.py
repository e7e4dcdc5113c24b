"""A real ros2_control arm behind the robot_rl bridge (safety supervisor in between):
``ros2 launch launch/arm_bridge.launch.py config:=hardware/configs/franka.yaml``.

Start the arm's driver and the controllers the config names first (see hardware/README.md).
Arguments: ``config`` (hardware config YAML, required), ``namespace``, ``events_log`` (JSON-lines
file of safety events).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _bridge(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cmd = ["robot-rl", "bridge", "--robot", value("config"), "--backend", "rclpy", "--network", "system",
           "--events-log", value("events_log")]
    if value("namespace"):
        cmd += ["--namespace", value("namespace")]
    return [ExecuteProcess(cmd=cmd, output="screen", name="robot_rl_arm_bridge")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("config", description="hardware config YAML, e.g. hardware/configs/ur5e.yaml"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("events_log", default_value="robot_rl_safety_events.jsonl"),
        OpaqueFunction(function=_bridge),
    ])
