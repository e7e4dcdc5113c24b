"""Human in the loop, end to end on real parts: ``robot-rl train --teleop`` interventions and human
labels, ``robot-rl record --source teleop``, the ``virtual`` operator, and stores written before
the ``intervention`` flag and the ``label`` table existed.

The operator is a :class:`ScriptedOperator`, a device registered through the real registry that
plays a script (episode, step → what the person does) on a :class:`~robot_rl.teleop.ScriptedDevice`;
its commands pass the real :class:`~robot_rl.teleop.TeleopSafety` and
:class:`~robot_rl.teleop.TeleopActionSource`, the real MuJoCo arm, the real training loop and real
Zarr stores. Nothing of ours is mocked.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.data import EpisodeStore, ReplayBuffer, StoreError
from robot_rl.data.recorder import open_recording_store
from robot_rl.data.schema import INTERVENTION, SOURCES, FeatureSpec, with_interventions
from robot_rl.data.verify import verify_store
from robot_rl.envs import make_arm_env
from robot_rl.teleop import (
    ScriptedDevice,
    TeleopActionSource,
    load_teleop_config,
    make_teleop_device,
    register_teleop_device,
    unregister_teleop_device,
)
from robot_rl.training import Trainer, load_train_config
from robot_rl.training.interventions import InterventionSource
from robot_rl.training.rollout import run_episode

Script = Callable[[int, int, ScriptedDevice], None]
FORWARD = [0.15, 0.0, 0.0, 0.0, 0.0, 0.0]  # 0.15 m/s along +x: action 0.5 at 10 Hz and position_scale 0.03
FAST = {"agent": {"hidden_sizes": [32, 32], "batch_size": 32},
        "train": {"eval_episodes": 1, "progress": False, "torch_threads": 1, "eval_every": 10_000,
                  "checkpoint_every": 10_000}}


class ScriptedOperator:
    """A teleop device that plays ``script(episode, step, device)`` before every poll (through the
    ``episode_start`` / ``observe`` hooks of TeleopActionSource)."""

    realtime = False
    help = "scripted operator (tests)"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.device = ScriptedDevice()
        self.episode, self.step, self.proposed = -1, 0, []

    def episode_start(self) -> None:
        self.episode, self.step = self.episode + 1, 0

    def observe(self, observation, proposed) -> None:
        self.proposed.append(None if proposed is None else np.array(proposed))
        self.script(self.episode, self.step, self.device)
        self.step += 1

    def poll(self):
        return self.device.poll()

    def close(self) -> None:
        self.device.close()


@pytest.fixture
def operator():
    """Register a scripted operator as device ``test_operator``; the test sets ``.script``."""
    made: list[ScriptedOperator] = []

    def factory(config):
        made.append(ScriptedOperator(lambda episode, step, device: holder.script(episode, step, device)))
        return made[-1]

    class Holder:
        script: Script = staticmethod(lambda episode, step, device: device.set(deadman=False))
        devices = made

    holder = Holder()
    register_teleop_device("test_operator", factory)
    yield holder
    unregister_teleop_device("test_operator")


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- train --teleop
def test_train_with_interventions_flags_steps_stores_the_human_actions_and_feeds_the_demos(tmp_path, operator):
    operator.script = lambda episode, step, device: device.set(FORWARD, deadman=10 <= step < 20)
    config = load_train_config(overrides={**FAST, "train": {**FAST["train"], "total_steps": 150, "warmup_steps": 100},
                                          "teleop": {"device": "test_operator"}})
    trainer = Trainer(config, tmp_path / "seed_0", seed=0)
    trainer.run()
    assert operator.devices[0].device.closed
    with EpisodeStore.open(tmp_path / "seed_0" / "replay.zarr") as store:
        assert store.n_episodes == 3 and INTERVENTION in store.features
        assert store.episodes["source"].tolist() == [SOURCES["intervention"]] * 3
        for index in range(3):
            steps = store.read_episode(index).steps
            flags, actions = steps[INTERVENTION], steps["action"]
            assert np.flatnonzero(flags).tolist() == list(range(10, 20))
            # The person's steps: exactly the twist as an action, the gripper where the policy left it.
            np.testing.assert_allclose(actions[10:20, :3], [[0.5, 0.0, 0.0]] * 10, atol=1e-6)
            assert np.all(actions[10:20, 3] == actions[9, 3])
            # The policy resumes on release: its own (random warm-up or learned) actions, not the person's.
            assert not np.allclose(actions[20:, :3], [0.5, 0.0, 0.0])
        flagged = int(store.load([INTERVENTION])[INTERVENTION].sum())
    # The demonstration buffer got exactly the intervened transitions (no demos.paths: it started empty).
    demos = trainer.data.demos
    assert flagged == 30 and len(demos) == 30 and demos.n_episodes == 3
    batch = demos.sample(64, np.random.default_rng(0))
    np.testing.assert_allclose(batch.action[:, :3].numpy(), np.tile([0.5, 0.0, 0.0], (64, 1)), atol=1e-6)
    # The RAM tier of online replay keeps the flags too.
    assert trainer.data.online.tracks_interventions and int(trainer.data.online.intervened().sum()) == 30
    rows = read_csv(tmp_path / "seed_0" / "logs" / "episodes.csv")
    assert [float(row["intervention_rate"]) for row in rows] == [0.2, 0.2, 0.2]
    assert [row["intervened_steps"] for row in rows] == ["10", "10", "10"]

    # A resumed run puts the stored interventions back into the demonstration buffer.
    resumed = load_train_config(overrides={**FAST, "train": {**FAST["train"], "total_steps": 200, "warmup_steps": 100},
                                           "teleop": {"device": "test_operator"}})
    again = Trainer(resumed, tmp_path / "seed_0", seed=0, resume=True)
    try:
        assert len(again.data.demos) == 30 and again.counters.env_steps == 150
    finally:
        again.human.close()
        again.store.close()
        again.logger.close()
        again.env.close()
        again.eval_env.close()


def test_human_labels_end_episodes_and_are_the_reward(tmp_path, operator):
    """reward.source: human. Success at step 7 of episode 0, failure at step 5 of episode 1,
    nothing in episode 2 (it times out)."""

    def script(episode: int, step: int, device: ScriptedDevice) -> None:
        device.set(deadman=False)
        if (episode, step) in ((0, 7), (1, 5)):
            device.press("success" if episode == 0 else "failure")

    operator.script = script
    config = load_train_config(overrides={**FAST, "train": {**FAST["train"], "total_steps": 62, "warmup_steps": 100},
                                          "teleop": {"device": "test_operator"}, "reward": {"source": "human"}})
    Trainer(config, tmp_path / "seed_0", seed=0).run()
    with EpisodeStore.open(tmp_path / "seed_0" / "replay.zarr") as store:
        table = store.episodes
        assert table["length"].tolist() == [7, 5, 50]
        assert table["success"].tolist() == [True, False, False]
        assert table["label"].tolist() == [1, 0, -1]  # success, failure, none
        assert table["source"].tolist() == [SOURCES["policy"]] * 3  # nobody took over
        rewards = [store.read_episode(i).steps["reward"].tolist() for i in range(3)]
        terminated = [store.read_episode(i).steps["terminated"].tolist() for i in range(3)]
    assert rewards[0] == [0.0] * 6 + [1.0] and terminated[0] == [False] * 6 + [True]
    assert rewards[1] == [0.0] * 5 and terminated[1] == [False] * 4 + [True]
    assert rewards[2] == [0.0] * 50 and not any(terminated[2])
    rows = read_csv(tmp_path / "seed_0" / "logs" / "episodes.csv")
    assert [(row["return"], row["label"]) for row in rows] == [("1.0", "1"), ("0.0", "0"), ("0.0", "-1")]


def test_a_device_that_goes_silent_under_the_persons_hand_holds_instead_of_jumping(operator):
    """The person drives from step 3; the device goes silent at step 6 (no input arrives while
    the safety filter's clock moves 10 s on); at step 12 it is back with the deadman released.
    Between, the arm holds (zero motion, gripper kept), not the policy's action; afterwards the
    policy drives again."""
    policy_action = np.array([0.0, 0.8, 0.0, 1.0], np.float32)

    class Policy:
        source = "policy"

        def reset(self) -> None:
            pass

        def act(self, observation):
            return policy_action

    skew = [0.0]

    def script(episode: int, step: int, device: ScriptedDevice) -> None:
        if 6 <= step < 12:
            skew[0] = 10.0  # time passes, nothing new arrives: the last input is 10 s old
            return
        skew[0] = 0.0
        device.set(FORWARD, gripper=None, deadman=3 <= step < 6)

    operator.script = script
    env = make_arm_env("reach", overrides={"task": {"max_episode_steps": 16}})
    config = load_teleop_config(overrides={"device": "test_operator"})
    device = make_teleop_device(config)
    events = []
    try:
        teleop = TeleopActionSource(device, config, env, clock=lambda: time.monotonic() + skew[0],
                                    on_event=events.append)
        source = InterventionSource(Policy(), teleop)
        executed = []

        class Steps:  # records what reached env.step, through run_episode's store interface
            features = {}

            def append_step(self, step) -> None:
                executed.append((np.array(step["action"]), source.last_intervened))

            def discard_episode(self) -> None:
                pass

        run_episode(env, source, seed=0, store=Steps())
    finally:
        device.close()
        env.close()
    actions = np.array([action for action, _ in executed])
    flags = [flag for _, flag in executed]
    assert flags == [False] * 3 + [True] * 3 + [False] * 10
    np.testing.assert_allclose(actions[:3], [policy_action] * 3)
    np.testing.assert_allclose(actions[3:6, :3], [[0.5, 0.0, 0.0]] * 3, atol=1e-6)
    np.testing.assert_allclose(actions[6:12, :3], 0.0)  # silent: hold, never the policy's +y
    assert np.all(actions[3:12, 3] == 1.0)  # the gripper stays where the policy had it
    np.testing.assert_allclose(actions[12:], [policy_action] * 4)  # back, deadman released: the policy again
    assert [event.kind for event in events] == ["silent", "resumed"]


# --------------------------------------------------------------------------- record --source teleop
def test_record_teleop_writes_labelled_human_episodes(tmp_path, operator, capsys):
    """Episode 0: success at step 4; then reset at step 3 (dropped, the same scene again); then
    failure at step 6; then no label (times out at 10 steps)."""
    presses = {(0, 4): "success", (1, 3): "reset", (2, 6): "failure"}

    def script(episode: int, step: int, device: ScriptedDevice) -> None:
        device.set(FORWARD, deadman=True)
        if (episode, step) in presses:
            device.press(presses[(episode, step)])

    operator.script = script
    out = tmp_path / "demos.zarr"
    assert main(["record", "--task", "reach", "--source", "teleop", "--teleop", "test_operator", "--episodes", "3",
                 "--out", str(out), "--set", "task.max_episode_steps=10"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["labels"] == {"success": 1, "failure": 1, "none": 1, "reset": 1}
    assert "NOT LABELLED" in captured.err and "reset: dropped" in captured.err
    assert operator.devices[0].device.closed
    with EpisodeStore.open(out) as store:
        table = store.episodes
        assert table["source"].tolist() == [SOURCES["human"]] * 3
        assert table["seed"].tolist() == [0, 1, 2]  # the reset scene (seed 1) was run again
        assert table["length"].tolist() == [4, 6, 10]
        assert table["label"].tolist() == [1, 0, -1]
        unlabelled = store.read_episode(2)
        assert table["success"].tolist()[:2] == [True, False]
        assert unlabelled.label == "none" and not unlabelled.steps["terminated"].any()
        np.testing.assert_allclose(store.read_episode(0).steps["action"][:, :3], [[0.5, 0.0, 0.0]] * 4, atol=1e-6)
    assert summary["store"]["labels"] == {"none": 1, "failure": 1, "success": 1}


# --------------------------------------------------------------------------- the virtual operator
class Constant:
    """A policy that always proposes the same action."""

    source = "policy"

    def __init__(self, action: list[float]) -> None:
        self.action = np.array(action, np.float32)

    def reset(self) -> None:
        pass

    def act(self, observation):
        return self.action


def _watch(task: str, policy: Constant, settings: dict) -> tuple[InterventionSource, Any]:
    """One episode of ``task`` with the ``virtual`` operator (``settings``) watching ``policy``."""
    env = make_arm_env(task)
    config = load_teleop_config(overrides={"device": "virtual", "virtual": {"noise": 0.0, **settings}})
    device = make_teleop_device(config)
    try:
        source = InterventionSource(policy, TeleopActionSource(device, config, env))
        run_episode(env, source, seed=0)
    finally:
        device.close()
        env.close()
    return source, device


STILL = [0.0, 0.0, 0.0, 0.0]  # never moves: stuck


def test_virtual_operator_takes_over_a_stuck_policy_with_delay_and_release():
    source, device = _watch("lift", Constant(STILL), {"stuck_steps": 5, "reaction_delay": 2, "control_steps": 6, "budget": 1.0})
    flags = source.flags
    first = flags.index(True)
    # Stuck after 5 steps without progress (counted from the first step), then 2 steps of reaction delay.
    assert first == 5 + 2
    assert flags[first:first + 6] == [True] * 6 and not flags[first + 6]  # m = 6 steps, then it lets go
    assert device.takeovers >= 2 and device.takeover_reasons["stuck"] == device.takeovers
    assert source.source == "intervention"


def test_virtual_operator_budget_caps_whole_takeovers():
    """A takeover starts only if all of it fits the budget, and is then finished, never cut short."""
    source, device = _watch("lift", Constant(STILL), {"stuck_steps": 2, "reaction_delay": 0, "control_steps": 4, "budget": 0.25})
    flags = source.flags
    assert 0 < sum(flags) <= 0.25 * len(flags) and device.fraction_driven <= 0.25
    runs = [len(run) for run in "".join("1" if flag else "0" for flag in flags).split("0") if run]
    assert runs and all(length == 4 for length in runs[:-1])  # whole takeovers (the episode may end one)
    assert device.takeovers == 3  # 3 x 4 steps fit 25 % of this 50-step episode, a fourth would not


def test_virtual_operator_stops_a_policy_heading_out_of_the_workspace():
    sideways = Constant([0.0, 1.0, 0.0, 0.0])  # always +y, full speed: into the workspace's side wall
    source, device = _watch("reach", sideways, {"reaction_delay": 0, "budget": 1.0, "control_steps": 5})
    assert device.takeover_reasons["leaving_workspace"] >= 1 and any(source.flags)


# --------------------------------------------------------------------------- old stores
def test_stores_without_the_intervention_flag_or_label_table_still_work(tmp_path):
    features = {"state": FeatureSpec("float32", (3,)), "action": FeatureSpec("float32", (2,)),
                "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}
    path = tmp_path / "old.zarr"
    steps = {"state": np.ones((5, 3)), "action": np.zeros((5, 2)), "reward": np.zeros(5), "terminated": np.zeros(5)}
    with EpisodeStore.create(path, features, ["state"], {"control_hz": 10}) as store:
        store.append_episode(steps, {"state": np.ones(3)}, success=True, source="scripted")
    shutil.rmtree(path / "meta" / "label")  # as written before the label table existed
    with EpisodeStore.open(path) as store:
        assert store.episodes["label"].tolist() == [-1] and store.read_episode(0).label == "none"
        buffer = ReplayBuffer.from_store(store)
        assert not buffer.tracks_interventions
        flagged = ReplayBuffer(with_interventions(features), ["state"], 10)
        flagged.add_episode(store.read_episode(0).steps, {"state": np.ones(3)})
        assert flagged.intervened().tolist() == [False] * 5  # absent flags read as False
    assert verify_store(path)["ok"]
    with EpisodeStore.open(path, "a") as store:
        store.append_episode(steps, {"state": np.ones(3)}, success=False, source="policy")  # unlabelled: fine
        with pytest.raises(StoreError, match="before per-episode labels existed"):
            store.append_episode(steps, {"state": np.ones(3)}, success=True, source="human", label="success")
    with EpisodeStore.open(path) as store:
        assert store.n_episodes == 2


def test_an_old_replay_cannot_take_interventions_but_a_new_one_takes_plain_steps(tmp_path):
    env = make_arm_env("reach", overrides={"task": {"max_episode_steps": 3}})
    try:
        old, new = tmp_path / "old.zarr", tmp_path / "new.zarr"
        open_recording_store(old, env).close()
        with pytest.raises(StoreError, match="no per-step 'intervention' flag"):
            open_recording_store(old, env, interventions=True)
        open_recording_store(new, env, interventions=True).close()
        with open_recording_store(new, env) as store:  # a plain recording into a store with flags: False
            obs, _ = env.reset(seed=0)
            step = {**obs, "action": np.zeros(4, np.float32), "reward": 0.0, "terminated": False}
            store.append_step(step)
            store.end_episode(obs, success=False)
            store.flush()
            assert store.read_episode(0).steps[INTERVENTION].tolist() == [False]
    finally:
        env.close()
