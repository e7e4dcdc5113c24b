"""robot_rl: sample-efficient off-policy RL for robot arms (MuJoCo sim, ROS 2, Zarr replay)."""

from robot_rl.envs import register_envs

__version__ = "0.1.0"

register_envs()
