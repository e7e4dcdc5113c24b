"""The MuJoCo arm as a ROS 2 node: ``ros2 launch launch/sim_bridge.launch.py task:=pick``.

Arguments: ``task`` (reach | push | pick | peg), ``namespace``, ``state_hz``, ``clock`` (publish
sim time on /clock), ``cameras`` (space-separated, e.g. ``"scene wrist"``; empty for none),
``twin`` (a reality-gap twin profile, e.g. ``default``: hardware/twins/; empty for the plain sim),
``time_scale`` (run the sim or twin this many times faster than real time; implies /clock), ``backend`` (rclpy | dds), and the DDS exposure (see launch/README.md): ``network`` (loopback,
the default, or system), ``interface``, ``domain_id``, ``security`` / ``keystore`` / ``enclave``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _bridge(context, *args, **kwargs):
    from robot_rl.hardware.launch_env import dds_environment

    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    env = dds_environment(value("network"), value("interface"), value("domain_id"), value("security"),
                          value("keystore"), value("enclave"))
    cmd = ["robot-rl", "bridge", "--robot", "sim", "--task", value("task"), "--backend", value("backend"),
           "--network", value("network"), "--domain-id", value("domain_id"), "--state-hz", value("state_hz")]
    if value("namespace"):
        cmd += ["--namespace", value("namespace")]
    if value("twin"):
        cmd += ["--twin", value("twin")]
    if value("time_scale"):
        cmd += ["--time-scale", value("time_scale")]
    if value("clock").lower() == "true":
        cmd.append("--clock")
    if value("cameras").split():
        cmd += ["--cameras", *value("cameras").split()]
    return [ExecuteProcess(cmd=cmd, additional_env=env, output="screen", name="robot_rl_sim_bridge")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="reach", description="reach | push | pick | peg"),
        DeclareLaunchArgument("namespace", default_value="", description="e.g. /arm1"),
        DeclareLaunchArgument("state_hz", default_value="500.0", description="bridge ticks per second"),
        DeclareLaunchArgument("clock", default_value="false", description="publish sim time on /clock"),
        DeclareLaunchArgument("cameras", default_value="", description='e.g. "scene wrist"'),
        DeclareLaunchArgument("twin", default_value="",
                              description="reality-gap twin profile (default | identical | a YAML path); empty: plain sim"),
        DeclareLaunchArgument("time_scale", default_value="",
                              description="faster than real time by this factor (publishes /clock); empty: 1"),
        DeclareLaunchArgument("backend", default_value="rclpy", description="rclpy | dds"),
        DeclareLaunchArgument("network", default_value="loopback",
                              description="loopback: DDS only on 127.0.0.1 | system: other hosts too"),
        DeclareLaunchArgument("interface", default_value="",
                              description="with network:=system, the only interface DDS uses (e.g. eth1)"),
        DeclareLaunchArgument("domain_id", default_value="0", description="ROS_DOMAIN_ID"),
        DeclareLaunchArgument("security", default_value="false", description="SROS2 DDS Security, enforced"),
        DeclareLaunchArgument("keystore", default_value="", description="SROS2 keystore (ROS_SECURITY_KEYSTORE)"),
        DeclareLaunchArgument("enclave", default_value="/robot_rl/bridge", description="the bridge's SROS2 enclave"),
        OpaqueFunction(function=_bridge),
    ])
