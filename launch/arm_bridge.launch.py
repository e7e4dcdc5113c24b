"""A real ros2_control arm behind the robot_rl bridge (safety supervisor in between):
``ros2 launch launch/arm_bridge.launch.py config:=hardware/configs/franka.yaml``.

Start the arm's driver and the controllers the config names first (see hardware/README.md).
Arguments: ``config`` (hardware config YAML, required), ``namespace``, ``events_log`` (JSON-lines
file of safety events), ``backend`` (rclpy | dds), and the DDS exposure (see launch/README.md):
``network`` (loopback, the default: nothing leaves this host; system: the robot's network),
``interface`` (with system: the only interface DDS may use, e.g. ``eth1``), ``domain_id``,
``security`` / ``keystore`` / ``enclave`` (SROS2 DDS Security, enforced when on), and
``estop_release_from_topic`` (honour ``data: false`` on robot_rl/estop; only with security on).
Without it the e-stop is released on this host with ``robot-rl bridge estop --release``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _bridge(context, *args, **kwargs):
    from robot_rl.hardware.launch_env import dds_environment

    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    env = dds_environment(value("network"), value("interface"), value("domain_id"), value("security"),
                          value("keystore"), value("enclave"))
    cmd = ["robot-rl", "bridge", "--robot", value("config"), "--backend", value("backend"), "--network",
           value("network"), "--domain-id", value("domain_id"), "--events-log", value("events_log")]
    if value("namespace"):
        cmd += ["--namespace", value("namespace")]
    if value("estop_release_from_topic").lower() == "true":
        if "ROS_SECURITY_ENABLE" not in env:
            raise ValueError("estop_release_from_topic:=true needs security:=true: without DDS Security anyone on "
                             "the DDS domain could release the e-stop")
        cmd += ["--set", "estop.release_from_topic=true"]
    return [ExecuteProcess(cmd=cmd, additional_env=env, output="screen", name="robot_rl_arm_bridge")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("config", description="hardware config YAML, e.g. hardware/configs/ur5e.yaml"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("events_log", default_value="robot_rl_safety_events.jsonl"),
        DeclareLaunchArgument("backend", default_value="rclpy", description="rclpy | dds"),
        DeclareLaunchArgument("network", default_value="loopback",
                              description="loopback: DDS only on 127.0.0.1 | system: the robot's network"),
        DeclareLaunchArgument("interface", default_value="",
                              description="with network:=system, the only interface DDS uses (e.g. eth1)"),
        DeclareLaunchArgument("domain_id", default_value="0", description="ROS_DOMAIN_ID"),
        DeclareLaunchArgument("security", default_value="false", description="SROS2 DDS Security, enforced"),
        DeclareLaunchArgument("keystore", default_value="", description="SROS2 keystore (ROS_SECURITY_KEYSTORE)"),
        DeclareLaunchArgument("enclave", default_value="/robot_rl/bridge", description="the bridge's SROS2 enclave"),
        DeclareLaunchArgument("estop_release_from_topic", default_value="false",
                              description="honour data: false on robot_rl/estop (needs security:=true)"),
        OpaqueFunction(function=_bridge),
    ])
