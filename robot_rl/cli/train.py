"""``robot-rl train`` and ``robot-rl eval``: learn on an arm, evaluate a checkpoint."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import gymnasium as gym
import yaml

from robot_rl.cli.common import (
    DEFAULT_OUT_DIR,
    CommandError,
    add_set_option,
    non_negative_int,
    positive_int,
    print_json,
    simulator_errors_reported,
    task_name,
)
from robot_rl.config import deep_merge, from_dict, parse_overrides, read_yaml
from robot_rl.training.config import AGENT_PRESETS, load_train_config


def train_command(args: argparse.Namespace) -> int:
    """Train (or resume) a run; prints the run directory first and the final evaluation last."""
    overrides = parse_overrides(args.overrides)
    if args.task is not None and args.env is not None:
        raise CommandError("--task names one of this project's arm tasks, --env any gymnasium env: give one of them")
    if args.task is not None:
        overrides = deep_merge(overrides, {"env": {"task": {"name": task_name(args.task)}}})
    overrides = deep_merge(overrides, gym_overrides(args))
    if args.seeds:
        overrides = deep_merge(overrides, {"train": {"seeds": args.seeds}})
    if args.demos:
        overrides = deep_merge(overrides, {"demos": {"paths": [str(p) for p in args.demos]}})
    if args.offline_steps is not None:
        overrides = deep_merge(overrides, {"demos": {"offline_steps": args.offline_steps}})
    if args.teleop is not None:
        overrides = deep_merge(overrides, {"teleop": {"device": args.teleop}})
    if args.reward is not None:
        overrides = deep_merge(overrides, {"reward": reward_overrides(args.reward)})
    if args.resume:
        config = resumed_config(args.run_dir, args.config, overrides, args.algo)
    else:
        config = load_train_config(args.config, overrides, agent_preset=args.algo)
    run_dir = args.run_dir or Path("runs") / f"{run_name(config)}_{args.algo or config.agent.algo}_{time.strftime('%Y%m%d-%H%M%S')}"
    return run_training(config, run_dir, args.resume)


def resumed_config(run_dir: Path | None, path: Path | None, overrides: dict, algo: str | None = None):
    """The config of the run in ``run_dir`` (its ``config.yaml``), under ``path`` and ``overrides``."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        raise CommandError("--resume needs --run-dir pointing at an existing run (with config.yaml)")
    saved = read_yaml(run_dir / "config.yaml")
    if not saved:  # the trainer always writes the whole config; empty would mean "all defaults"
        raise CommandError(f"{run_dir / 'config.yaml'} is empty, so it does not say how the run was "
                           "configured; restore it (or start a new run) before resuming")
    return load_train_config(path, deep_merge(saved, overrides), agent_preset=algo)


def run_training(config, run_dir: Path, resume: bool) -> int:
    """Train every seed of ``config`` in ``run_dir``; the run directory first, the final evaluations last."""
    from robot_rl.training import train

    print(f"run directory: {run_dir.resolve()}", flush=True)
    with simulator_errors_reported():
        results = train(config, run_dir, resume=resume)
    print(f"learning curve: {(run_dir / 'learning_curve.png').resolve()}")
    print_json({"run_dir": str(run_dir), "final_eval": {str(seed): result for seed, result in results.items()}})
    return 0


def gym_overrides(args: argparse.Namespace) -> dict:
    """The ``env.gym`` section from ``--env``, ``--env-kwargs``, ``--env-import`` and ``--wrapper``."""
    if args.env is None and (args.env_kwargs is not None or args.env_imports or args.wrappers):
        raise CommandError("--env-kwargs, --env-import and --wrapper apply to a gymnasium env: add --env ID")
    section: dict = {}
    if args.env is not None:
        if not args.env.strip():
            raise CommandError("--env: expected a gymnasium env id such as Pendulum-v1, got an empty string")
        section["id"] = args.env.strip()
    if args.env_kwargs is not None:
        try:
            kwargs = yaml.safe_load(args.env_kwargs)
        except yaml.YAMLError as exc:
            raise CommandError(f"--env-kwargs: not JSON or YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(kwargs, dict):
            raise CommandError(f"--env-kwargs: expected a mapping such as '{{\"reward_type\": \"sparse\"}}', "
                               f"got {args.env_kwargs!r}")
        section["kwargs"] = kwargs
    if args.env_imports:
        section["imports"] = list(args.env_imports)
    if args.wrappers:
        section["wrappers"] = list(args.wrappers)
    return {"env": {"gym": section}} if section else {}


def reward_overrides(value: str) -> dict[str, str]:
    """The ``reward`` section from ``--reward env | human | auto | classifier:PATH``."""
    source, _, path = value.partition(":")
    if source == "classifier":
        if not path:
            raise CommandError("--reward classifier:PATH: name the classifier file (robot-rl reward train --out PATH)")
        return {"source": "classifier", "classifier": path}
    if source not in ("env", "human", "auto") or path:
        raise CommandError(f"--reward: expected env, human, auto or classifier:PATH, got {value!r}")
    return {"source": source}


def run_name(config) -> str:
    """The run directory's leading name: the arm task, or the gymnasium env id made path-safe."""
    env_id = config.env.gym.id
    if not env_id:
        return config.env.task.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", env_id).strip("-.") or "env"


def eval_command(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint's deterministic policy; JSON on stdout."""
    from robot_rl.agents import make_agent
    from robot_rl.envs.interface import InterfaceMismatchError, env_interface, interface_mismatches
    from robot_rl.training.checkpoint import load_agent_state, load_checkpoint
    from robot_rl.training.finetune import trained_interface
    from robot_rl.training.config import TrainConfig
    from robot_rl.training.loop import make_env
    from robot_rl.training.rollout import EVAL_SEED_OFFSET, evaluate

    payload = load_checkpoint(args.checkpoint)
    overrides = parse_overrides(args.overrides)
    if args.robot is not None:  # deployment: the robot's own physics, not the training randomisation
        overrides = deep_merge({"env": {"robot": {"kind": args.robot}, "randomization": {"enabled": False}}}, overrides)
    config = from_dict(TrainConfig, deep_merge(payload["config"], overrides), f"{args.checkpoint} (config)")
    config.check_complete()  # e.g. a device this machine does not have
    if args.render and config.env.gym.id:
        raise CommandError(f"--render draws this project's arm cameras; the checkpoint's env is the gymnasium env "
                           f"{config.env.gym.id!r} (evaluate it without --render)")
    with simulator_errors_reported():
        env = make_env(config)
        if overrides:  # the policy must fit the env it now runs in (checked before anything moves)
            mismatches = interface_mismatches(trained_interface(payload, make_env), env_interface(env))
            if mismatches:
                env.close()
                raise InterfaceMismatchError(str(args.checkpoint), mismatches)
        agent = make_agent(env.observation_space, env.action_space, config.agent)
        load_agent_state(agent, payload, args.checkpoint)
        seed = EVAL_SEED_OFFSET if args.seed is None else args.seed
        if args.render:
            result = _evaluate_with_video(env, agent, args, seed)
        else:
            result = evaluate(env, agent, args.episodes, seed=seed)
        env.close()
    print_json({**result, "checkpoint": str(args.checkpoint), "env_steps": payload["counters"]["env_steps"]})
    return 0


def _evaluate_with_video(env: gym.Env, agent, args: argparse.Namespace, seed: int) -> dict:
    from robot_rl.training.rollout import AgentPolicy, episode_summary
    from robot_rl.viz import annotate, frame_strip, open_video, run_episode

    base = env.unwrapped
    obs_cfg = base.config.observation
    args.out.mkdir(parents=True, exist_ok=True)
    video_path = args.out / f"eval_{args.checkpoint.stem}.mp4"
    returns, successes = [], []
    video = open_video(video_path, base.metadata["render_fps"])
    try:
        for episode in range(args.episodes):
            record = run_episode(env, AgentPolicy(agent), episode, seed + episode,
                                 lambda: base.robot.render("scene", obs_cfg.render_height, obs_cfg.render_width),
                                 lambda: None)
            for frame in record.frames:
                video.append_data(annotate(frame.image, f"episode {episode} step {frame.step}", frame.success))
            frame_strip(record, f"{base.spec.id if base.spec else ''} episode {episode}: "
                                f"{'success' if record.success else 'no success'}",
                        base.config.task.max_episode_steps).save(args.out / f"eval_ep{episode}.png")
            returns.append(record.episode_return)
            successes.append(record.success)
    finally:
        video.close()
    print(f"video: {video_path}", flush=True)
    return {**episode_summary(returns, successes), "video": str(video_path)}


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a policy (default: SAC reaching on the simulated arm)",
        description="Train off-policy on an arm. With no arguments: SAC on RobotRL/ArmReach-v0 (dense reward), "
                    "a few minutes on a laptop CPU. Everything of the run (replay store *.zarr, checkpoints, "
                    "CSV/TensorBoard logs, learning-curve PNG) lives under --run-dir. With --demos: RLPD-style "
                    "mixing (--algo rlpd), DDPGfD (--algo ddpgfd) or AWAC (--algo awac) from demonstrations.")
    train.add_argument("--config", type=Path, metavar="FILE", help="YAML with env/agent/train sections")
    add_set_option(train, "agent.utd_ratio=4 env.task.reward_type=sparse")
    train.add_argument("--algo", choices=AGENT_PRESETS, help="agent preset from robot_rl/configs/agents")
    train.add_argument("--task", metavar="TASK", help="reach | push | pick | peg | lift or a full RobotRL/* env id")
    train.add_argument("--env", metavar="ID",
                       help="any gymnasium env id instead of an arm task (env.gym.id), e.g. Pendulum-v1 or "
                            "Pusher-v5: Box or Dict (goal dict) observations, Box actions with finite bounds "
                            "(rescaled to [-1, 1]); discrete actions are refused. The task sections are then ignored")
    train.add_argument("--env-kwargs", metavar="MAPPING",
                       help="keyword arguments of gymnasium.make, as JSON or YAML (env.gym.kwargs), e.g. "
                            "'{\"reward_type\": \"sparse\"}' or '{\"max_episode_steps\": 200}'")
    train.add_argument("--env-import", dest="env_imports", action="append", metavar="MODULE",
                       help="module to import before gymnasium.make, e.g. gymnasium_robotics, so that it registers "
                            "its ids (repeatable; env.gym.imports)")
    train.add_argument("--wrapper", dest="wrappers", action="append", metavar="MODULE:CALLABLE",
                       help="callable(env) -> env applied after gymnasium.make, in order (repeatable; "
                            "env.gym.wrappers), e.g. gymnasium.wrappers:NormalizeReward")
    train.add_argument("--seeds", type=non_negative_int, nargs="+", help="one run per seed (default: 0)")
    train.add_argument("--demos", type=Path, action="append", metavar="D.zarr",
                       help="demonstration dataset (repeatable); mixed into minibatches at demos.ratio")
    train.add_argument("--offline-steps", type=non_negative_int, metavar="K",
                       help="gradient steps on the demonstrations alone before interaction")
    train.add_argument("--teleop", metavar="DEVICE",
                       help="let a person take over from the policy at any step with a teleop device (teleop.device: "
                            "keyboard | gamepad | spacemouse | joy | twist | virtual, the scripted operator): hold the "
                            "deadman to drive; those steps are flagged 'intervention' and also join the "
                            "demonstrations (mixed in at demos.ratio). Success / failure buttons end an episode "
                            "(rewards from them with --set reward.source=human, the default on robot kind ros2). "
                            "Device settings: --set teleop.KEY=VALUE")
    train.add_argument("--reward", metavar="SOURCE",
                       help="where the reward comes from (reward.source): env (the task's), human (a teleop device's "
                            "success / failure buttons), classifier:PATH (a success classifier on the camera frames, "
                            "robot-rl reward train; threshold and hold with --set reward.threshold=P "
                            "reward.hold_steps=K; in simulation the task's own success is logged beside it) or auto "
                            "(default: human on robot kind ros2 with --teleop, else env)")
    train.add_argument("--run-dir", type=Path, metavar="DIR", help="default: runs/<task or env id>_<algo>_<time>")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir from its last checkpoint and replay store")
    train.set_defaults(handler=train_command)

    evaluate = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (JSON: success_rate, return_mean, return_std, episodes; "
                     "success_rate is null for a gymnasium env that reports no info['is_success'])",
        description="Run the checkpoint's deterministic policy on its task for N episodes.")
    evaluate.add_argument("--checkpoint", type=Path, required=True, metavar="PATH")
    evaluate.add_argument("--episodes", type=positive_int, default=20)
    evaluate.add_argument("--seed", type=non_negative_int, help="seed of the first episode (default: the eval seeds)")
    evaluate.add_argument("--robot", metavar="KIND",
                          help="run the policy on another robot kind (env.robot.kind, e.g. ros2: the twin or a real "
                               "arm's bridge), without the training randomisation; the checkpoint's env interface "
                               "is checked against it first")
    evaluate.add_argument("--render", action="store_true", help="also write an MP4 and PNG strips")
    evaluate.add_argument("--out", type=Path, default=Path(DEFAULT_OUT_DIR), metavar="DIR")
    add_set_option(evaluate, "env.task.reward_type=sparse (applied over the checkpoint's config)")
    evaluate.set_defaults(handler=eval_command)
