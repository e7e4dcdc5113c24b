"""Scripted experts: state-machine controllers that solve each task from the observation.

They read privileged simulator state that ArmEnv puts in the observation (object and goal
poses) and output ``ee_delta`` actions in ``[-1, 1]``.
"""
