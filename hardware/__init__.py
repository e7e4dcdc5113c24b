"""The physical-robot side of robot_rl, installed as ``robot_rl.hardware``.

* :mod:`.transport`: a small typed publish/subscribe interface with two backends, ``rclpy``
  (where ROS 2 is sourced) and the ``cyclonedds`` wheel speaking ROS 2's wire conventions, with
  message classes generated from rosbags' ROS 2 definitions;
* :mod:`.topics`: the arm bridge's ROS 2 interface (every topic, type and QoS);
* :mod:`.bridge`: the arm bridge node that serves any :class:`~robot_rl.robot.Robot` on those
  topics, with :mod:`.safety`'s supervisor between every command and the arm;
* :mod:`.ros2_arm`: ``Ros2Arm``, the :class:`~robot_rl.robot.Robot` protocol as a client of a
  bridge (``gym.make(..., robot="ros2")``);
* :mod:`.ros2_control_arm`: a real ros2_control arm as a ``Robot``, reached through its own topics,
  described by :mod:`.arm_config` files (``configs/*.yaml``) with :mod:`.kinematics`;
* :mod:`.node`: assembling and running a bridge (``robot-rl bridge``, ``launch/``);
* :mod:`.twin`: the reality-gap twin, the MuJoCo arm with physics, latency, noise, gripper and
  timing that differ from the training sim (``robot-rl bridge --twin PROFILE``, profiles in
  ``twins/*.yaml``), the stand-in for a physical arm;
* :mod:`.estop`: who may engage and who may release the e-stop (the local release channel);
  :mod:`.launch_env`: the DDS exposure (network, interface, domain, SROS2) of launched processes.

Learning code imports nothing of it: the ``TransportConfig`` settings are part of the core's env
config (:mod:`robot_rl.envs.config`), and ``ros2_arm.make_ros2_arm`` is robot kind ``ros2``
through the ``robot_rl.robots`` entry point, loaded only when an env with ``robot.kind=ros2`` is
made, so neither DDS nor rclpy is loaded for simulation.
"""
