"""Recording demonstrations: EpisodeRecorder on the real MuJoCo reach task into real Zarr stores,
and ``robot-rl record`` as a subprocess, including a SIGKILL in the middle of a recording."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.data import EpisodeStore, SpecMismatchError
from robot_rl.data.recorder import ScriptedSource, open_recording_store
from robot_rl.envs import make_arm_env
from robot_rl.envs.experts import make_expert
from robot_rl.training.recorder import EpisodeRecorder

SHORT = {"task": {"max_episode_steps": 10}}  # seeds 0 and 1 fail in 10 steps, 2-4 succeed


def simulate(env, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The scripted expert's episode from ``seed``, computed afresh: steps and final observation."""
    expert = make_expert(env)
    observation, _ = env.reset(seed=seed)
    expert.reset()
    steps: dict[str, list] = {}
    done = False
    while not done:
        action = expert.act(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        for name, value in {**observation, "action": action, "reward": reward, "terminated": terminated}.items():
            steps.setdefault(name, []).append(value)
        observation, done = next_observation, terminated or truncated
    return {name: np.asarray(values) for name, values in steps.items()}, observation


def assert_matches_simulation(store: EpisodeStore, index: int, env) -> None:
    episode = store.read_episode(index)
    steps, final = simulate(env, episode.seed)
    for name, spec in store.features.items():
        assert episode.steps[name].tobytes() == steps[name].astype(spec.dtype).tobytes(), name
    for key in store.obs_keys:
        assert episode.final_obs[key].tobytes() == final[key].tobytes(), key


class StopAfter:
    """A human-like source: holds still for ``steps`` steps, then ends the episode (``None``)."""

    source = "human"

    def __init__(self, env, steps: int) -> None:
        self.action = np.zeros(env.action_space.shape, np.float32)
        self.limit, self.count = steps, 0

    def reset(self) -> None:
        self.count = 0

    def act(self, observation):
        self.count += 1
        return self.action if self.count <= self.limit else None


@pytest.fixture
def reach_env():
    env = make_arm_env("reach", overrides=SHORT)
    yield env
    env.close()


def test_record_and_append_scripted_reach(tmp_path, reach_env):
    path = tmp_path / "demos.zarr"
    seen = []
    with open_recording_store(path, reach_env) as store:
        summary = EpisodeRecorder(reach_env, store, ScriptedSource(reach_env)).record(3, progress=seen.append)
        assert store.n_episodes == 3  # record() returns once everything is committed
    assert (summary.episodes_run, summary.episodes_recorded, summary.first_seed) == (3, 3, 0)
    assert [outcome.seed for outcome in seen] == [0, 1, 2]
    assert summary.successes == sum(outcome.success for outcome in seen) == 1

    with open_recording_store(path, reach_env) as store:  # appending continues with fresh seeds
        summary = EpisodeRecorder(reach_env, store, ScriptedSource(reach_env)).record(2)
    assert summary.first_seed == 3

    store = EpisodeStore.open(path)
    table = store.episodes
    assert store.n_episodes == 5 and store.n_steps == 50
    assert table["seed"].tolist() == [0, 1, 2, 3, 4]
    assert table["success"].tolist() == [False, False, True, True, True]
    assert {store.read_episode(i).source for i in range(5)} == {"scripted"}
    assert store.tasks == ["reach"] and store.attrs["control_hz"] == 10.0
    assert store.attrs["env"]["task"]["max_episode_steps"] == 10
    for index in (0, 4):
        assert_matches_simulation(store, index, reach_env)


def test_successful_only_and_sources_that_end_episodes(tmp_path, reach_env):
    path = tmp_path / "demos.zarr"
    with open_recording_store(path, reach_env) as store:
        recorder = EpisodeRecorder(reach_env, store, ScriptedSource(reach_env), successful_only=True)
        summary = recorder.record(4, first_seed=0)
        assert (summary.episodes_recorded, summary.successes) == (2, 2)
        assert store.episodes["seed"].tolist() == [2, 3]

        human = EpisodeRecorder(reach_env, store, StopAfter(reach_env, 4))
        outcome = human.record_episode(seed=7)
        assert (outcome.steps, outcome.kept) == (4, True)
        assert EpisodeRecorder(reach_env, store, StopAfter(reach_env, 0)).record_episode(seed=8).kept is False
        store.flush()
        last = store.read_episode(-1)
        assert (last.source, last.seed, last.length) == ("human", 7, 4)
        assert not last.steps["terminated"].any()  # ended by the source: a truncation

        class Unplugged(StopAfter):
            """A device that fails after two steps."""

            def act(self, observation):
                if self.count == 2:
                    raise ConnectionError("device unplugged")
                return super().act(observation)

        with pytest.raises(ConnectionError):
            EpisodeRecorder(reach_env, store, Unplugged(reach_env, 5)).record_episode(seed=9)
        assert store.steps_in_flight == 0  # the broken episode's steps are not glued onto the next one

        named_badly = StopAfter(reach_env, 1)
        named_badly.source = "keyboard"
        with pytest.raises(ValueError, match="'keyboard' is not one of"):
            EpisodeRecorder(reach_env, store, named_badly)
    assert EpisodeStore.open(path).n_episodes == 3


def test_recording_into_a_store_of_another_env_names_the_difference(tmp_path, reach_env, capsys):
    path = tmp_path / "demos.zarr"
    with open_recording_store(path, reach_env) as store:
        EpisodeRecorder(reach_env, store, ScriptedSource(reach_env)).record(1)
    with pytest.raises(SpecMismatchError, match="cube_pos"):
        push = make_arm_env("push")
        try:
            open_recording_store(path, push)
        finally:
            push.close()
    assert main(["record", "--task", "reach", "--episodes", "1", "--out", str(path),
                 "--set", "control.control_hz=20", "task.max_episode_steps=10"]) == 2
    assert "control rate: 10.0 Hz in the dataset, 20.0 Hz in the env" in capsys.readouterr().err
    assert EpisodeStore.open(path).n_episodes == 1  # untouched, and its lock released


def robot_rl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "robot_rl.cli", *args]


def committed_episodes(path) -> int:
    """n_episodes of the store's commit record (0 before the store exists)."""
    try:
        return json.loads((path / "zarr.json").read_text())["attributes"]["commit"]["n_episodes"]
    except FileNotFoundError:
        return 0


def test_sigkill_during_robot_rl_record_keeps_every_committed_episode(tmp_path):
    path = tmp_path / "demos.zarr"
    child_env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    child = subprocess.Popen(robot_rl_command("record", "--task", "reach", "--episodes", "1000", "--out", str(path)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env)
    try:
        deadline = time.monotonic() + 60
        while committed_episodes(path) < 3:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the recording did not commit 3 episodes in 60 s"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    with EpisodeStore.open(path, "a") as store:  # trims whatever was past the commit
        n = store.n_episodes
        assert n >= 3 and not list(path.rglob("*.partial"))
        table = store.episodes
        assert table["seed"].tolist() == list(range(n))
        assert table["length"].tolist() == [50] * n
        assert table["source"].tolist() == [2] * n  # scripted
    default_reach = make_arm_env("reach")  # 50-step episodes, as recorded
    try:
        store = EpisodeStore.open(path)
        for index in (0, n - 1):
            assert_matches_simulation(store, index, default_reach)
    finally:
        default_reach.close()

    again = subprocess.run(robot_rl_command("record", "--task", "reach", "--episodes", "2", "--out", str(path)),
                           capture_output=True, text=True, env=child_env, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["first_seed"], summary["episodes_recorded"]) == (n, 2)
    assert summary["store"]["episodes"] == n + 2 and summary["store"]["sources"]["scripted"] == n + 2
    assert "record reach" in again.stderr  # the progress bar


# --------------------------------------------------------------------------- "recorded" means committed
class StderrReader(threading.Thread):
    """Collects a child's stderr as it comes (tqdm redraws its bar with carriage returns)."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []
        self.start()

    def run(self) -> None:
        while chunk := os.read(self.stream.fileno(), 4096):
            self.chunks.append(chunk.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def shown_recorded(self) -> int:
        """The last count the progress bar showed the user as recorded ("N/1000")."""
        counts = re.findall(r"(\d+)/1000 \[", self.text)
        return int(counts[-1]) if counts else 0


def start_recording(path) -> tuple[subprocess.Popen, StderrReader]:
    """``robot-rl record`` of many 5-step episodes (a commit every few tens of milliseconds)."""
    child = subprocess.Popen(robot_rl_command("record", "--task", "reach", "--episodes", "1000", "--out", str(path),
                                              "--set", "task.max_episode_steps=5"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    return child, StderrReader(child.stderr)


def wait_until_shown(child: subprocess.Popen, reader: StderrReader, count: int) -> None:
    deadline = time.monotonic() + 60
    while reader.shown_recorded() < count:
        assert child.poll() is None, reader.text
        assert time.monotonic() < deadline, f"the progress bar did not reach {count} in 60 s: {reader.text[-500:]}"
        time.sleep(0.005)


@pytest.mark.parametrize("shown, delay", [(1, 0.0), (3, 0.0), (6, 0.03)])
def test_sigkill_never_takes_back_an_episode_shown_as_recorded(tmp_path, shown, delay):
    """The progress bar counts commits, not episodes handed to the background writer, so a kill
    right after it shows N leaves at least N episodes in the store."""
    path = tmp_path / "demos.zarr"
    child, reader = start_recording(path)
    try:
        wait_until_shown(child, reader, shown)
        time.sleep(delay)
        seen = reader.shown_recorded()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    committed = committed_episodes(path)
    assert committed >= seen >= shown
    with EpisodeStore.open(path, "a") as store:  # recovers to the commit
        assert store.episodes["seed"].tolist() == list(range(store.n_episodes))


def test_sigterm_commits_every_queued_episode_and_exits_143(tmp_path):
    path = tmp_path / "demos.zarr"
    child, reader = start_recording(path)
    try:
        wait_until_shown(child, reader, 2)
        child.send_signal(signal.SIGTERM)
        out = child.stdout.read().decode()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    reader.join(timeout=10)
    assert child.returncode == 143, reader.text[-2000:]
    assert reader.text.rstrip().endswith("robot-rl record: terminated by SIGTERM")
    assert "Traceback" not in reader.text
    summary = json.loads(out)
    assert summary["interrupted"] is True
    # Every episode that finished (was queued) is committed; one queued just as the signal came
    # may be committed without having been counted as run yet, never the other way round.
    assert committed_episodes(path) == summary["episodes_recorded"] == summary["store"]["episodes"]
    assert summary["episodes_recorded"] >= summary["episodes_run"] >= 2
    with EpisodeStore.open(path, "a") as store:  # lock released, nothing to recover
        assert store.n_episodes == summary["episodes_recorded"]


def test_sigterm_while_episodes_wait_for_a_slow_writer_commits_them_all(tmp_path, monkeypatch, capsys):
    """In process, with commits slowed down so that finished episodes are certainly still queued
    when SIGTERM arrives (at the reset of the fourth episode): all three are committed."""
    from robot_rl.cli import record as record_command
    from robot_rl.data import episode_writer

    path = tmp_path / "demos.zarr"
    commit = episode_writer.write_json_atomically

    def slow_commit(*args) -> None:
        time.sleep(0.3)
        commit(*args)

    committed_at_signal = []

    class TerminatedAtFourthEpisode(ScriptedSource):
        def __init__(self, env) -> None:
            super().__init__(env)
            self.resets = 0

        def reset(self) -> None:
            self.resets += 1
            if self.resets == 4:
                committed_at_signal.append(committed_episodes(path))
                os.kill(os.getpid(), signal.SIGTERM)
            super().reset()

    monkeypatch.setattr(episode_writer, "write_json_atomically", slow_commit)
    monkeypatch.setitem(record_command.ACTION_SOURCES, "scripted", TerminatedAtFourthEpisode)
    code = main(["record", "--task", "reach", "--episodes", "10", "--out", str(path), "--set", "task.max_episode_steps=5"])
    assert code == 143
    assert committed_at_signal[0] < 3  # some finished episodes were still queued
    assert committed_episodes(path) == 3
    summary = json.loads(capsys.readouterr().out)
    assert (summary["episodes_run"], summary["episodes_recorded"], summary["interrupted"]) == (3, 3, True)
