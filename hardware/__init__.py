"""The physical-robot side of robot_rl, installed as ``robot_rl.hardware``.

This package is where the ROS 2 arm bridge node, the transports behind its small
publish/subscribe interface (``rclpy`` where ROS 2 is sourced, the ``cyclonedds`` wheel with ROS 2
wire conventions elsewhere), per-robot configs and the safety supervisor live. The supervisor sits
between every action source and the robot: joint and workspace limits, action-rate limits, e-stop,
stale-state and heartbeat watchdogs and a teleop deadman, with every intervention recorded.
"""
