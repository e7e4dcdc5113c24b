"""The ROS 2 interface of the arm bridge node: every topic, its message type and QoS.

Names are relative, so a bridge started with a namespace (``--namespace /arm1``) serves
``/arm1/joint_states`` etc.; ``/clock`` is absolute, as in ROS 2. All messages are standard ROS 2
types, so ``ros2 topic echo`` / ``rqt`` / rosbag work on them unchanged.

State (bridge → clients), stamped with the robot's clock (sim time for the MuJoCo twin):

=====================================  ====================================  ======================
topic                                  type                                  content
=====================================  ====================================  ======================
``joint_states``                       sensor_msgs/JointState                arm joints, rad, rad/s
``robot_rl/tool_pose``                 geometry_msgs/PoseStamped             tool centre point
``robot_rl/gripper_state``             sensor_msgs/JointState                joint ``gripper``: opening, m
``robot_rl/object_poses``              geometry_msgs/PoseArray               objects in spec order
``robot_rl/spec``                      std_msgs/String (JSON, latched)       limits, objects, rates
``robot_rl/safety_events``             std_msgs/String (JSON)                supervisor events
``robot_rl/reset_done``                std_msgs/String (JSON)                ``{"id", "stamp"}``
``camera/<name>/image_raw``            sensor_msgs/Image (rgb8)              optional
``camera/<name>/image_raw/compressed`` sensor_msgs/CompressedImage (jpeg)    optional
``/clock``                             rosgraph_msgs/Clock                   sim time, when asked
=====================================  ====================================  ======================

Commands (clients → bridge); every one is checked by its validator
(:mod:`robot_rl.hardware.validation`: size, type, length, finiteness, range) and then passes the
safety supervisor:

=================================================  =============================  ==================
topic                                              type                           meaning
=================================================  =============================  ==================
``forward_position_controller/commands``           std_msgs/Float64MultiArray     joint targets, rad
``joint_trajectory_controller/joint_trajectory``   trajectory_msgs/JointTrajectory  timed joint targets
``robot_rl/tool_target``                           geometry_msgs/PoseStamped      tool pose target
``robot_rl/tool_twist``                            geometry_msgs/TwistStamped     tool velocity, m/s, rad/s
``robot_rl/gripper_command``                       std_msgs/Float64MultiArray     ``[opening]``, m
``robot_rl/estop``                                 std_msgs/Bool                  true: stop (latched) [1]_
``robot_rl/reset``                                 std_msgs/String (JSON)         start of an episode
=================================================  =============================  ==================

.. [1] ``false`` (release) is refused and reported as an ``estop_release_refused`` safety event:
   anyone on the DDS domain can publish here. Release on the bridge's host with
   ``robot-rl bridge estop --release`` (see :mod:`robot_rl.hardware.estop`).
"""

from __future__ import annotations

from robot_rl.hardware.transport import QoS

JOINT_STATES = "joint_states"
TOOL_POSE = "robot_rl/tool_pose"
GRIPPER_STATE = "robot_rl/gripper_state"
OBJECT_POSES = "robot_rl/object_poses"
SPEC = "robot_rl/spec"
SAFETY_EVENTS = "robot_rl/safety_events"
RESET_DONE = "robot_rl/reset_done"
CLOCK = "/clock"

JOINT_POSITION_COMMAND = "forward_position_controller/commands"
JOINT_TRAJECTORY = "joint_trajectory_controller/joint_trajectory"
TOOL_TARGET = "robot_rl/tool_target"
TOOL_TWIST = "robot_rl/tool_twist"
GRIPPER_COMMAND = "robot_rl/gripper_command"
ESTOP = "robot_rl/estop"
RESET = "robot_rl/reset"

LATCHED = QoS(reliable=True, transient_local=True, depth=1)  # late joiners get the last message
DEFAULT = QoS(reliable=True, transient_local=False, depth=10)  # ROS 2's default profile
# State streams run at the bridge's tick rate (500 Hz): 100 samples = 0.2 s of slack for a client
# whose delivery thread is briefly starved (GIL, a busy CPU) before keep-last drops samples.
SENSOR = QoS(reliable=True, transient_local=False, depth=100)
EVENTS = QoS(reliable=True, transient_local=True, depth=100)


def image_topic(camera: str) -> str:
    return f"camera/{camera}/image_raw"


def compressed_image_topic(camera: str) -> str:
    return f"camera/{camera}/image_raw/compressed"
