"""Sim bridge + a learner training through ROS 2:
``ros2 launch launch/sim_train.launch.py task:=reach algo:=sac``.

The learner is ``robot-rl train`` with ``env.robot.kind=ros2``: the same trainer as in-process
simulation, its environment stepping the bridge over topics. Arguments: ``task``, ``algo``,
``run_dir``, ``namespace``, ``backend`` (rclpy | dds), and the DDS exposure (see
launch/README.md): ``network`` (loopback, the default, or system), ``interface``, ``domain_id``,
``security`` / ``keystore`` and one SROS2 enclave per process, ``enclave`` (the bridge) and
``learner_enclave``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _nodes(context, *args, **kwargs):
    from robot_rl.hardware.launch_env import dds_environment

    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    network = [value("network"), value("interface"), value("domain_id"), value("security"), value("keystore")]
    namespace = ["--namespace", value("namespace")] if value("namespace") else []
    transport = [f"env.robot.ros2.transport.backend={value('backend')}",
                 f"env.robot.ros2.transport.network={value('network')}",
                 f"env.robot.ros2.transport.domain_id={value('domain_id')}"]
    if value("namespace"):
        transport.append(f"env.robot.ros2.transport.namespace={value('namespace')}")
    bridge = ExecuteProcess(cmd=["robot-rl", "bridge", "--robot", "sim", "--task", value("task"), "--backend",
                                 value("backend"), "--network", value("network"), "--domain-id", value("domain_id"),
                                 *namespace],
                            additional_env=dds_environment(*network, value("enclave")),
                            output="screen", name="robot_rl_sim_bridge")
    train = ExecuteProcess(cmd=["robot-rl", "train", "--task", value("task"), "--algo", value("algo"),
                                "--run-dir", value("run_dir"), "--set", "env.robot.kind=ros2", *transport],
                           additional_env=dds_environment(*network, value("learner_enclave")),
                           output="screen", name="robot_rl_train")
    return [bridge, train]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="reach"),
        DeclareLaunchArgument("algo", default_value="sac"),
        DeclareLaunchArgument("run_dir", default_value="runs/ros2_train"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("backend", default_value="rclpy", description="rclpy | dds"),
        DeclareLaunchArgument("network", default_value="loopback",
                              description="loopback: DDS only on 127.0.0.1 | system: other hosts too"),
        DeclareLaunchArgument("interface", default_value="",
                              description="with network:=system, the only interface DDS uses (e.g. eth1)"),
        DeclareLaunchArgument("domain_id", default_value="0", description="ROS_DOMAIN_ID"),
        DeclareLaunchArgument("security", default_value="false", description="SROS2 DDS Security, enforced"),
        DeclareLaunchArgument("keystore", default_value="", description="SROS2 keystore (ROS_SECURITY_KEYSTORE)"),
        DeclareLaunchArgument("enclave", default_value="/robot_rl/bridge", description="the bridge's SROS2 enclave"),
        DeclareLaunchArgument("learner_enclave", default_value="/robot_rl/learner",
                              description="the learner's SROS2 enclave"),
        OpaqueFunction(function=_nodes),
    ])
