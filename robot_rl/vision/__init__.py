"""Learning from cameras: image encoders (:mod:`~robot_rl.vision.encoders`), encoder files and
frozen features cached per frame (:mod:`~robot_rl.vision.features`), pretraining in simulation
(:mod:`~robot_rl.vision.pretrain`) and success classifiers as rewards
(:mod:`~robot_rl.vision.reward_classifier`)."""
