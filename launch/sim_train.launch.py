"""Sim bridge + a learner training through ROS 2:
``ros2 launch launch/sim_train.launch.py task:=reach algo:=sac``.

The learner is ``robot-rl train`` with ``env.robot.kind=ros2``: the same trainer as in-process
simulation, its environment stepping the bridge over topics. Arguments: ``task``, ``algo``,
``run_dir``, ``namespace``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _nodes(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    namespace = ["--namespace", value("namespace")] if value("namespace") else []
    transport = ["env.robot.ros2.transport.backend=rclpy", "env.robot.ros2.transport.network=system"]
    if value("namespace"):
        transport.append(f"env.robot.ros2.transport.namespace={value('namespace')}")
    bridge = ExecuteProcess(cmd=["robot-rl", "bridge", "--robot", "sim", "--task", value("task"), "--backend",
                                 "rclpy", "--network", "system", *namespace],
                            output="screen", name="robot_rl_sim_bridge")
    train = ExecuteProcess(cmd=["robot-rl", "train", "--task", value("task"), "--algo", value("algo"),
                                "--run-dir", value("run_dir"), "--set", "env.robot.kind=ros2", *transport],
                           output="screen", name="robot_rl_train")
    return [bridge, train]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="reach"),
        DeclareLaunchArgument("algo", default_value="sac"),
        DeclareLaunchArgument("run_dir", default_value="runs/ros2_train"),
        DeclareLaunchArgument("namespace", default_value=""),
        OpaqueFunction(function=_nodes),
    ])
