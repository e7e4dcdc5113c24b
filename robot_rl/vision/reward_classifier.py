"""Reward classifiers: a binary success detector on camera frames, trained from labelled episodes.

Rewards without simulator state: a :class:`SuccessClassifier` (an
:class:`~robot_rl.vision.encoders.ImageEncoder` per camera, optionally the robot's own state from
:data:`PROPRIO_KEYS`, then an MLP → one logit) says whether a frame shows the task done. A training
run uses it through :class:`ClassifierReward` (threshold plus a "must hold for k steps" gate)::

    reward = ClassifierReward.load("lift_classifier.pt", threshold=None, hold_steps=3)
    reward.check_space(env.observation_space)        # fail fast: other cameras / image size
    reward.reset()                                   # at every env.reset
    success, p = reward(next_obs)                    # after every env.step (dict of numpy arrays)

**Frame labels** (:func:`frame_labels`, :class:`LabelRule`). An episode succeeded when a person
labelled it success, or, unlabelled (``label`` none), when the env's ``success`` flag says so; a
person's *failure* label wins over the flag too. Frames are the observation before each step plus
the final observation (after the last action), numbered ``0 … length``:

- *positive*: the final observation and the last ``positive_tail`` (default 5) step observations
  of a successful episode. The end of a successful episode shows the task done: scripted experts
  hold the success state until the time limit (lift: the cube is up for the last ~26 of 50 steps)
  and a person presses "success" once it is done. The tail is kept short because an episode that
  ends *at* success (``task.terminate_on_success``, a person's success button) shows the task done
  only in its last frames; five steps before that (0.5 s at 10 Hz) the state is close to done.
- *negative*: every frame of a failed episode, and the frames of a successful episode before its
  last ``negative_margin`` (default 30) steps. The margin is long because a successful episode
  may have been done long before it ended (lift's expert: ~26 steps) and a done frame taught as a
  failure hurts more than the frames lost: failed episodes give negatives in plenty.
- the frames in between are left out of training (and of the frame metrics).

**Hold-out**: whole episodes (never single frames, which are near-duplicates of their neighbours)
are held out for the report, drawn with a seed separately among successful and failed episodes,
so both kinds are in both parts.

**Training** (:func:`train_classifier`): Adam (lr 1e-3, 10 epochs, batches of 128), BCE with
logits, DrQ's random shift (4 px) on every camera. Classes are balanced by sampling: each batch
draws positives and negatives with equal probability (positives are few, ~6 frames per successful
episode; weighting them by negatives / positives in the loss instead, ``balance="pos_weight"``,
left 2 of 3 seeds stuck at a loss of 0.5-0.8 after 10 epochs on the lift data below, with held-out
recall 0.33 and 0.17, where sampling fitted all 3 with held-out recall 1 and no false positive).
The conv trunk's maps are flattened (:data:`CLASSIFIER_ENCODER`): with spatial-softmax pooling one
seed of 3 fired on a held-out failed episode (frame FPR 6.8 %). (Lift at 64 px, both cameras,
30 expert successes + 30 failures, 20 % held out; the README has the figures.)

**Threshold** (``threshold="auto"``): the smallest threshold, not below 0.5, at which
the false-positive rate on the *training* frames is at most ``max_fpr`` (default 1 %): a false
success pays a policy for doing nothing useful (and with ``terminate_on_success`` ends its
episode), which costs more than a late one. Training frames flatter the classifier, so the held-out
report is the figure to trust; ``hold_steps`` > 1 cuts isolated false positives further.

**Report** (:func:`evaluate`): precision, recall, false-positive rate, accuracy, ROC AUC and the
confusion table (TP FP / FN TN) of the labelled frames of the held-out episodes, plus
episode-level figures with the hold gate (successful episodes in which it fires at some step,
failed episodes in which it fires: the false alarms an RL run would see), and a PNG of the hardest
frames (:func:`plot_hardest_frames`: highest-loss false positives / negatives, cameras side by side).

**File** (:meth:`SuccessClassifier.save` / :meth:`SuccessClassifier.load`): one ``torch.save`` of
a dict: ``format`` (:data:`CLASSIFIER_FORMAT`), the encoder spec, proprio keys and shapes,
threshold, hold steps, label rule, ``state_dict`` and the training report. Loading a file of
another kind, or using a classifier with cameras of other names, sizes or dtypes, raises an
:class:`~robot_rl.vision.encoders.EncoderMismatchError` (a ``ValueError``) naming what differs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robot_rl.vision.encoders import (
    IMAGE_PREFIX,
    EncoderMismatchError,
    EncoderSpec,
    ImageEncoder,
    check_images,
    image_keys,
)

CLASSIFIER_FORMAT = "robot_rl.reward_classifier/1"
#: Vector observation keys a classifier may read besides its cameras: the robot's own state, which
#: a real arm reports too. Object poses (``cube_pos``, ...) are simulator state and are refused.
PROPRIO_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_width")
POSITIVE_TAIL = 5
NEGATIVE_MARGIN = 30
MAX_FPR = 0.01
AUGMENT_PAD = 4
HIDDEN = 256
HARDEST_PER_KIND = 8
#: Encoder settings of a classifier unless given (:class:`TrainSettings`): ``flatten`` pooling (the
#: module docstring says why).
CLASSIFIER_ENCODER: dict[str, Any] = {"pool": "flatten"}


class ClassifierError(ValueError):
    """The data cannot train or evaluate a classifier as asked (no successful episodes, a
    proprio key a store lacks, ...). A ``ValueError``: the CLI reports it with exit code 2."""


# --------------------------------------------------------------------------- labels and frames
@dataclass(frozen=True)
class LabelRule:
    """Which frames of an episode are positive, negative or left out (see the module docstring)."""

    positive_tail: int = POSITIVE_TAIL  # step observations before the final one that are positive
    negative_margin: int = NEGATIVE_MARGIN  # last steps of a successful episode that are never negative

    def __post_init__(self) -> None:
        if self.positive_tail < 0 or self.negative_margin < 0:
            raise ValueError(f"positive_tail and negative_margin must be 0 or more, got {self}")
        if self.negative_margin < self.positive_tail:
            raise ValueError(f"negative_margin ({self.negative_margin}) must be at least positive_tail "
                             f"({self.positive_tail}): a frame cannot be both")


def frame_labels(length: int, success: bool, rule: LabelRule = LabelRule()) -> np.ndarray:
    """Labels of an episode's ``length + 1`` frames (steps ``0 … length − 1``, then the final
    observation): 1 positive, 0 negative, −1 left out."""
    labels = np.zeros(length + 1, np.int8)
    if success:
        labels[:] = -1
        labels[max(0, length - rule.positive_tail):] = 1
        labels[: max(0, length - rule.negative_margin)] = 0
    return labels


def episode_success(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per episode of a store's table: a person's label (success / failure) where given, else
    the env's ``success`` flag."""
    label = np.asarray(table["label"])
    return np.where(label >= 0, label == 1, np.asarray(table["success"], bool))


@dataclass(frozen=True)
class EpisodeRef:
    """One episode of one of the stores: ``store`` indexes the store list, ``index`` the store's episodes."""

    store: int
    index: int
    success: bool
    length: int


def list_episodes(stores: Sequence[Any]) -> list[EpisodeRef]:
    """Every committed episode of the open stores, with its success (:func:`episode_success`)."""
    refs = []
    for s, store in enumerate(stores):
        table = store.episodes
        for i, (ok, length) in enumerate(zip(episode_success(table), table["length"])):
            refs.append(EpisodeRef(s, i, bool(ok), int(length)))
    return refs


def split_episodes(episodes: Sequence[EpisodeRef], hold_out: float,
                   seed: int) -> tuple[list[EpisodeRef], list[EpisodeRef]]:
    """(training, held-out) episodes: a seeded ``hold_out`` fraction of the successful and, apart,
    of the failed episodes (at least one of each kind when it has two or more, and never the last
    one), in their original order."""
    if not 0.0 <= hold_out < 1.0:
        raise ValueError(f"hold_out must be in [0, 1), got {hold_out}")
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    for kind in (True, False):
        members = [i for i, ref in enumerate(episodes) if ref.success is kind]
        count = int(round(hold_out * len(members)))
        if hold_out > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held.update(rng.permutation(members)[:count].tolist())
    return ([ref for i, ref in enumerate(episodes) if i not in held],
            [ref for i, ref in enumerate(episodes) if i in held])


@dataclass
class Frames:
    """Frames of some episodes, one row each: camera key → ``(N, H, W, C)`` uint8, proprio key →
    ``(N, ...)`` float32, their ``labels`` (1 / 0 / −1 left out), the position of their episode in
    ``episodes`` and their ``step`` in it (``length`` = the final observation)."""

    images: dict[str, np.ndarray]
    proprio: dict[str, np.ndarray]
    labels: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    episodes: list[EpisodeRef]
    stores: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> Frames:
        return Frames({k: v[rows] for k, v in self.images.items()}, {k: v[rows] for k, v in self.proprio.items()},
                      self.labels[rows], self.episode[rows], self.step[rows], self.episodes, self.stores)

    def batch(self, rows: np.ndarray | slice) -> dict[str, torch.Tensor]:
        """The observation dict of ``rows`` as tensors (images stay uint8)."""
        return {key: torch.from_numpy(np.ascontiguousarray(array[rows]))
                for key, array in (*self.images.items(), *self.proprio.items())}

    def counts(self) -> dict[str, int]:
        return {"positive": int((self.labels == 1).sum()), "negative": int((self.labels == 0).sum()),
                "left_out": int((self.labels < 0).sum())}


def _camera_key(name: str) -> str:
    return name if name.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + name


def data_spec(store: Any, cameras: Sequence[str] | None = None) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    """(camera keys, image shape) a classifier trained on ``store`` uses: the given cameras
    (``scene`` or ``image_scene``), default every camera of the store; all must share one shape."""
    available = image_keys(store.obs_keys)
    keys = tuple(sorted({_camera_key(c) for c in cameras})) if cameras else tuple(available)
    if not keys:
        raise ClassifierError(f"{store.path}: the store has no camera images (observation keys: "
                              f"{', '.join(store.obs_keys)}); record with --set observation.images=true")
    missing = [key for key in keys if key not in available]
    if missing:
        raise ClassifierError(f"{store.path}: no camera {', '.join(missing)} in the store "
                              f"(it has {', '.join(available) or 'no cameras'})")
    shapes = {key: store.features[key].shape for key in keys}
    if len(set(shapes.values())) > 1:
        raise ClassifierError(f"{store.path}: the cameras have different image shapes ({shapes}); "
                              f"choose cameras of one shape with --cameras")
    return keys, tuple(shapes[keys[0]])


def check_proprio(proprio: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...]],
                  source: str) -> list[str]:
    """Problems (empty: none) of ``shapes`` for the proprio keys and shapes ``proprio``."""
    problems = []
    for key, shape in proprio.items():
        if key not in shapes:
            problems.append(f"proprio key {key!r} is missing")
        elif tuple(shapes[key]) != tuple(shape):
            problems.append(f"{key!r} has shape {tuple(shapes[key])}, the classifier expects {tuple(shape)}")
    return problems


def check_proprio_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The keys, sorted, if all are in :data:`PROPRIO_KEYS`; else a ClassifierError."""
    keys = tuple(sorted(set(keys)))
    foreign = [key for key in keys if key not in PROPRIO_KEYS]
    if foreign:
        raise ClassifierError(f"proprio keys {foreign} are not the robot's own state; allowed: "
                              f"{', '.join(PROPRIO_KEYS)} (object poses are simulator state a real arm does not "
                              f"report)")
    return keys


def check_store(store: Any, spec: EncoderSpec, proprio: Mapping[str, tuple[int, ...]]) -> None:
    """EncoderMismatchError naming every camera / proprio key of the classifier that ``store``
    lacks or has at another shape or dtype."""
    features = store.features
    source = f"store {store.path}"
    problems = []
    try:
        check_images(spec, {key: features[key].shape for key in store.obs_keys},
                     {key: features[key].dtype for key in store.obs_keys}, source)
    except EncoderMismatchError as exc:
        problems.append(str(exc))
    extra = check_proprio(proprio, {key: features[key].shape for key in store.obs_keys}, source)
    if extra:
        problems.append(f"{source} does not fit the classifier: " + "; ".join(extra))
    if problems:
        raise EncoderMismatchError("; ".join(problems))


def load_frames(stores: Sequence[Any], episodes: Sequence[EpisodeRef], cameras: Sequence[str],
                proprio: Sequence[str] = (), rule: LabelRule = LabelRule(), keep_left_out: bool = False,
                max_negatives: int | None = None, seed: int = 0, block_steps: int = 2048) -> Frames:
    """The frames of ``episodes`` (from the open ``stores``) with their labels. ``keep_left_out``
    keeps the unlabelled frames too (label −1; for episode-level figures). ``max_negatives`` draws
    at most that many negative frames (seeded) before reading, so a big replay store fits in memory.
    Episodes are read in blocks of about ``block_steps`` steps."""
    # Which frames of which episode, decided before reading anything.
    selected: list[np.ndarray] = []
    labels_of: list[np.ndarray] = []
    for ref in episodes:
        labels = frame_labels(ref.length, ref.success, rule)
        labels_of.append(labels)
        selected.append(np.ones_like(labels, bool) if keep_left_out else labels >= 0)
    if max_negatives is not None:
        negatives = [(e, s) for e, labels in enumerate(labels_of) for s in np.flatnonzero((labels == 0) & selected[e])]
        if len(negatives) > max_negatives:
            rng = np.random.default_rng(seed)
            drop = rng.permutation(len(negatives))[max_negatives:]
            for j in drop:
                e, s = negatives[j]
                selected[e][s] = False
    total = int(sum(mask.sum() for mask in selected))
    first = stores[episodes[0].store] if episodes else stores[0]
    images = {key: np.empty((total, *first.features[key].shape), np.uint8) for key in cameras}
    vectors = {key: np.empty((total, *first.features[key].shape), np.float32) for key in proprio}
    out_labels = np.empty(total, np.int8)
    out_episode = np.empty(total, np.int64)
    out_step = np.empty(total, np.int64)
    names = [*cameras, *proprio]
    row = 0
    positions = list(range(len(episodes)))
    for s, store in enumerate(stores):
        mine = [p for p in positions if episodes[p].store == s and selected[p].any()]
        start = 0
        while start < len(mine):  # blocks of about block_steps steps
            stop, steps = start, 0
            while stop < len(mine) and (stop == start or steps + episodes[mine[stop]].length <= block_steps):
                steps += episodes[mine[stop]].length
                stop += 1
            block = mine[start:stop]
            index = [episodes[p].index for p in block]
            data = store.load(names, episodes=index)
            finals = store.final_obs(index)
            offset = 0
            for j, p in enumerate(block):
                length = episodes[p].length
                rows = np.flatnonzero(selected[p])
                count = len(rows)
                in_steps = rows[rows < length]
                for key in names:
                    target = images[key] if key in images else vectors[key]
                    block_rows = data[key][offset + in_steps]
                    target[row: row + len(in_steps)] = block_rows
                    if count > len(in_steps):  # the final observation
                        target[row + count - 1] = finals[key][j]
                out_labels[row: row + count] = labels_of[p][rows]
                out_episode[row: row + count] = p
                out_step[row: row + count] = rows
                row += count
                offset += length
            start = stop
    return Frames(images, vectors, out_labels, out_episode, out_step, list(episodes),
                  [str(store.path) for store in stores])


# --------------------------------------------------------------------------- the model
class SuccessClassifier(nn.Module):
    """Cameras (one :class:`ImageEncoder` trunk each, concatenated) + normalised proprio vectors
    → MLP → one logit of "the task is done in this frame"."""

    def __init__(self, spec: EncoderSpec, proprio: Mapping[str, Sequence[int]] | None = None,
                 hidden: int = HIDDEN, augment_pad: int = AUGMENT_PAD) -> None:
        super().__init__()
        self.spec = spec
        self.proprio = {key: tuple(int(n) for n in shape) for key, shape in sorted((proprio or {}).items())}
        self.hidden = hidden
        self.encoder = ImageEncoder(spec, augment_pad)
        dim = sum(math.prod(shape) for shape in self.proprio.values())
        self.register_buffer("proprio_mean", torch.zeros(dim))
        self.register_buffer("proprio_std", torch.ones(dim))
        self.head = nn.Sequential(nn.Linear(spec.output_dim + dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.threshold = 0.5
        self.hold_steps = 1
        self.rule = LabelRule()
        self.report: dict[str, Any] = {}
        self.path: str | None = None  # the file it was loaded from

    def forward(self, observation: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Batch (camera keys: uint8 ``(B, H, W, C)``; proprio keys: ``(B, ...)``) → logits ``(B,)``."""
        features = self.encoder(observation)
        if self.proprio:
            vector = torch.cat([observation[key].reshape(len(features), -1).float() for key in self.proprio], dim=1)
            features = torch.cat([features, (vector - self.proprio_mean) / self.proprio_std], dim=1)
        return self.head(features).squeeze(-1)

    def set_proprio_statistics(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Normalise the proprio inputs by the mean and std of ``vectors`` (the training frames)."""
        if not self.proprio:
            return
        stacked = np.concatenate([np.asarray(vectors[key], np.float64).reshape(len(vectors[key]), -1)
                                  for key in self.proprio], axis=1)
        self.proprio_mean.copy_(torch.as_tensor(stacked.mean(0), dtype=torch.float32))
        self.proprio_std.copy_(torch.as_tensor(np.maximum(stacked.std(0), 1e-3), dtype=torch.float32))

    @torch.inference_mode()
    def probabilities(self, frames: Frames | Mapping[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
        """p(success) of every row (eval mode, no augmentation); ``frames`` is a :class:`Frames` or
        a dict of batched numpy arrays."""
        was_training = self.training
        self.eval()
        arrays = {**frames.images, **frames.proprio} if isinstance(frames, Frames) else frames
        keys = [*self.spec.cameras, *self.proprio]
        count = len(arrays[keys[0]])
        out = np.empty(count, np.float32)
        for start in range(0, count, batch_size):
            rows = slice(start, start + batch_size)
            batch = {key: torch.from_numpy(np.ascontiguousarray(arrays[key][rows])) for key in keys}
            out[rows] = torch.sigmoid(self(batch)).numpy()
        self.train(was_training)
        return out

    def describe(self) -> str:
        """"image_scene, image_wrist at (64, 64, 3) + proprio gripper_width": what it reads."""
        text = f"{', '.join(self.spec.cameras)} at {self.spec.image_shape}"
        return text + (f" + proprio {', '.join(self.proprio)}" if self.proprio else "")

    def check(self, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str] | None = None,
              source: str = "the observation") -> None:
        """EncoderMismatchError naming every camera / proprio key of this classifier that
        ``shapes`` (key → shape of one observation) lacks or has at another shape / dtype."""
        name = f"reward classifier {self.path}" if self.path else "the reward classifier"
        problems = []
        try:
            check_images(self.spec, shapes, dtypes, source)
        except EncoderMismatchError as exc:
            problems.append(str(exc).removeprefix(f"{source} does not fit the encoder: "))
        problems += check_proprio(self.proprio, shapes, source)
        if problems:
            raise EncoderMismatchError(f"{source} does not fit {name} (trained on {self.describe()}): "
                                       + "; ".join(problems))

    # ------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write spec, proprio keys, threshold, hold steps, label rule, weights and report to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CLASSIFIER_FORMAT,
            "encoder_spec": dataclasses.asdict(self.spec),
            "proprio": {key: list(shape) for key, shape in self.proprio.items()},
            "hidden": self.hidden,
            "augment_pad": self.encoder.augment_pad,
            "threshold": float(self.threshold),
            "hold_steps": int(self.hold_steps),
            "label_rule": dataclasses.asdict(self.rule),
            "state_dict": self.state_dict(),
            "report": _plain(self.report),
        }
        partial = path.with_name(path.name + ".partial")
        torch.save(payload, partial)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SuccessClassifier:
        """The classifier saved at ``path``, in eval mode; EncoderMismatchError for a file that is
        not one (FileNotFoundError for a missing file)."""
        path = Path(path)
        if path.is_dir():
            raise EncoderMismatchError(f"{path} is a directory, not a reward classifier file (robot-rl reward "
                                       f"train writes one file)")
        if not path.is_file():
            raise FileNotFoundError(f"reward classifier {path} does not exist (train one with robot-rl reward train)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a torch file, truncated, pickled objects
            raise EncoderMismatchError(f"{path} is not a reward classifier file: torch.load failed "
                                       f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        found = payload.get("format") if isinstance(payload, Mapping) else None
        if found != CLASSIFIER_FORMAT:
            what = (f"format {found!r}" if found is not None else
                    f"no format tag; keys {sorted(payload)[:8]}" if isinstance(payload, Mapping)
                    else f"a {type(payload).__name__}")
            hint = ""
            if isinstance(found, str) and found.startswith("robot_rl.reward_classifier/"):
                hint = " (written by another version of robot_rl)"
            elif isinstance(payload, Mapping) and found is None and "agent" in payload:
                hint = " (it looks like a training checkpoint)"
            raise EncoderMismatchError(f"{path} is not a reward classifier file ({what}, expected "
                                       f"{CLASSIFIER_FORMAT!r}){hint}")
        try:
            fields = dict(payload["encoder_spec"])
            spec = EncoderSpec(**{**fields, "cameras": tuple(fields["cameras"]),
                                  "image_shape": tuple(fields["image_shape"])})
            model = cls(spec, {key: tuple(shape) for key, shape in payload["proprio"].items()},
                        hidden=int(payload["hidden"]), augment_pad=int(payload["augment_pad"]))
            model.load_state_dict(payload["state_dict"])
            model.threshold = float(payload["threshold"])
            model.hold_steps = int(payload["hold_steps"])
            model.rule = LabelRule(**payload["label_rule"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise EncoderMismatchError(f"{path}: damaged reward classifier file ({type(exc).__name__}: "
                                       f"{' '.join(str(exc).split())[:300]})") from None
        model.report = dict(payload.get("report", {}))
        model.path = str(path)
        return model.eval().requires_grad_(False)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars / arrays turned into Python numbers and lists (for
    ``torch.load(weights_only=True)`` and JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- the reward
class ClassifierReward:
    """A success signal from a :class:`SuccessClassifier`: ``success`` once p(success) ≥
    ``threshold`` for ``hold_steps`` consecutive calls (reset the count with :meth:`reset` at
    every episode start).

    Every call checks the observation's cameras (names, shapes, uint8) and proprio keys against the
    classifier and raises :class:`EncoderMismatchError` naming each difference, so a camera that
    changes size or dtype mid-run stops the run instead of giving rewards for garbage. Inference
    is batch 1, eval mode, without gradients, on the CPU."""

    def __init__(self, classifier: SuccessClassifier, threshold: float | None = None,
                 hold_steps: int | None = None) -> None:
        self.classifier = classifier.eval().requires_grad_(False)
        self.threshold = float(classifier.threshold if threshold is None else threshold)
        self.hold_steps = int(classifier.hold_steps if hold_steps is None else hold_steps)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold}")
        if self.hold_steps < 1:
            raise ValueError(f"hold_steps must be at least 1, got {self.hold_steps}")
        self.keys = (*classifier.spec.cameras, *classifier.proprio)
        self._streak = 0

    @classmethod
    def load(cls, path: str | os.PathLike[str], threshold: float | None = None,
             hold_steps: int | None = None) -> ClassifierReward:
        """From a classifier file; ``threshold`` / ``hold_steps`` default to the file's."""
        return cls(SuccessClassifier.load(path), threshold, hold_steps)

    def check_space(self, observation_space: Any) -> None:
        """Check a gymnasium ``Dict`` observation space up front (same errors as a call)."""
        spaces = getattr(observation_space, "spaces", None)
        if spaces is None:
            raise EncoderMismatchError(f"the reward classifier needs a Dict observation with camera images, "
                                       f"got {observation_space}")
        self.classifier.check({k: s.shape for k, s in spaces.items()}, {k: str(s.dtype) for k, s in spaces.items()},
                              "the env's observation space")

    def reset(self) -> None:
        """Start a new episode: the hold count restarts."""
        self._streak = 0

    def probability(self, observation: Mapping[str, Any]) -> float:
        """p(success) of one observation (dict of numpy arrays, unbatched); does not touch the gate."""
        shapes, dtypes = {}, {}
        for key, value in observation.items():
            if hasattr(value, "shape"):
                shapes[key], dtypes[key] = tuple(value.shape), str(value.dtype)
        self.classifier.check(shapes, dtypes)
        batch = {key: torch.from_numpy(np.ascontiguousarray(observation[key]))[None] for key in self.keys}
        with torch.inference_mode():
            return float(torch.sigmoid(self.classifier(batch))[0])

    def __call__(self, observation: Mapping[str, Any]) -> tuple[bool, float]:
        """(success, p): p of this observation, success once p ≥ threshold for hold_steps calls in a row."""
        p = self.probability(observation)
        self._streak = self._streak + 1 if p >= self.threshold else 0
        return self._streak >= self.hold_steps, p


def gate(probabilities: np.ndarray, threshold: float, hold_steps: int) -> np.ndarray:
    """What :class:`ClassifierReward` says at each step of one episode given its p sequence."""
    streak, out = 0, np.zeros(len(probabilities), bool)
    for i, p in enumerate(probabilities):
        streak = streak + 1 if p >= threshold else 0
        out[i] = streak >= hold_steps
    return out


# --------------------------------------------------------------------------- metrics
def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def confusion_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Counts and rates of boolean predictions against the truth: ``tp fp fn tn``, precision,
    recall, false-positive rate, accuracy (None where undefined) and ``confusion`` =
    ``[[TP, FP], [FN, TN]]`` (rows: predicted success / failure; columns: true success / failure)."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    tp, fp = int((predicted & actual).sum()), int((predicted & ~actual).sum())
    fn, tn = int((~predicted & actual).sum()), int((~predicted & ~actual).sum())
    return {"frames": tp + fp + fn + tn, "positives": tp + fn, "negatives": fp + tn,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "false_positive_rate": _ratio(fp, fp + tn), "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
            "confusion": [[tp, fp], [fn, tn]]}


class ConfusionCounter:
    """Running confusion counts of a classifier's successes against the true ones (e.g. the
    simulator's ``is_success`` logged beside the learned reward during a training run)."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def add(self, predicted: bool, actual: bool) -> None:
        if predicted:
            if actual:
                self.tp += 1
            else:
                self.fp += 1
        elif actual:
            self.fn += 1
        else:
            self.tn += 1

    def metrics(self) -> dict[str, Any]:
        """As :func:`confusion_metrics`."""
        return confusion_metrics(np.repeat([True, True, False, False], [self.tp, self.fp, self.fn, self.tn]),
                                 np.repeat([True, False, True, False], [self.tp, self.fp, self.fn, self.tn]))


def roc_auc(probabilities: np.ndarray, actual: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    actual = np.asarray(actual, bool)
    pos, neg = probabilities[actual], probabilities[~actual]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), np.float64)
    values = np.concatenate([pos, neg])[order]
    ranks[order] = np.arange(1, len(order) + 1)
    # average ranks of ties
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks[order])
    ranks[order] = (sums / counts)[inverse]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auto_threshold(probabilities: np.ndarray, labels: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """The smallest threshold ≥ 0.5 at which at most ``max_fpr`` of the negatives (labels 0) have
    p ≥ threshold (the module docstring says why)."""
    negatives = np.sort(np.asarray(probabilities, np.float64)[np.asarray(labels) == 0])[::-1]
    allowed = int(math.floor(max_fpr * len(negatives)))
    if allowed >= len(negatives):
        return 0.5
    # strictly above the (allowed + 1)-th highest negative, so at most `allowed` reach the threshold
    return float(max(0.5, np.nextafter(np.float32(negatives[allowed]), np.float32(1.0))))


def evaluate(classifier: SuccessClassifier, frames: Frames, threshold: float | None = None,
             hold_steps: int | None = None, probabilities: np.ndarray | None = None) -> dict[str, Any]:
    """Report on ``frames`` (loaded with ``keep_left_out`` for the episode figures): frame metrics
    of the labelled frames at ``threshold`` (default the classifier's), ROC AUC, and per episode
    whether the hold gate fires at some frame (successful: detected; failed: a false alarm)."""
    threshold = classifier.threshold if threshold is None else threshold
    hold_steps = classifier.hold_steps if hold_steps is None else hold_steps
    p = classifier.probabilities(frames) if probabilities is None else probabilities
    labelled = frames.labels >= 0
    report = confusion_metrics(p[labelled] >= threshold, frames.labels[labelled] == 1)
    report["roc_auc"] = roc_auc(p[labelled], frames.labels[labelled] == 1)
    report["threshold"] = float(threshold)
    fired = {True: [], False: []}
    for e, ref in enumerate(frames.episodes):
        rows = np.flatnonzero(frames.episode == e)
        if not len(rows):
            continue
        rows = rows[np.argsort(frames.step[rows])]
        fired[ref.success].append(bool(gate(p[rows], threshold, hold_steps).any()))
    report["episodes"] = {
        "hold_steps": int(hold_steps),
        "successful": len(fired[True]), "detected": int(sum(fired[True])),
        "failed": len(fired[False]), "false_alarms": int(sum(fired[False])),
        "recall": _ratio(sum(fired[True]), len(fired[True])),
        "false_positive_rate": _ratio(sum(fired[False]), len(fired[False])),
    }
    return report


# --------------------------------------------------------------------------- the PNG
def plot_hardest_frames(frames: Frames, probabilities: np.ndarray, threshold: float, out: str | os.PathLike[str],
                        per_kind: int = HARDEST_PER_KIND, title: str = "") -> Path:
    """A PNG grid of the highest-loss labelled frames: up to ``per_kind`` negatives with the
    highest p (false positives first) and positives with the lowest p (false negatives first);
    each cell shows the cameras side by side, with p, the verdict and where the frame is from."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    labelled = np.flatnonzero(frames.labels >= 0)
    negatives = labelled[frames.labels[labelled] == 0]
    positives = labelled[frames.labels[labelled] == 1]
    picks = ([(i, "FP" if probabilities[i] >= threshold else "neg") for i in
              negatives[np.argsort(-probabilities[negatives], kind="stable")][:per_kind]]
             + [(i, "FN" if probabilities[i] < threshold else "pos") for i in
                positives[np.argsort(probabilities[positives], kind="stable")][:per_kind]])
    columns = 4
    rows = max(1, math.ceil(len(picks) / columns))
    cameras = list(frames.images)
    height, width = (frames.images[cameras[0]].shape[1:3] if cameras else (1, 1))
    aspect = width * max(1, len(cameras)) / max(height, 1)
    cell = 1.3  # inches of image height per cell
    figure = Figure(figsize=(columns * cell * aspect + 0.4, rows * (cell + 0.45) + 0.8))
    FigureCanvasAgg(figure)
    for n, (i, verdict) in enumerate(picks):
        axis = figure.add_subplot(rows, columns, n + 1)
        separator = np.full((height, 2, 3), 255, np.uint8)
        tiles = []
        for key in cameras:
            tiles += [frames.images[key][i][..., :3], separator]
        axis.imshow(np.concatenate(tiles[:-1], axis=1) if tiles else np.zeros((1, 1, 3), np.uint8))
        ref = frames.episodes[int(frames.episode[i])]
        store = Path(frames.stores[ref.store]).name
        step = "final" if frames.step[i] == ref.length else f"step {int(frames.step[i])}"
        wrong = verdict in ("FP", "FN")
        axis.set_title(f"{verdict} p={probabilities[i]:.3f}\n{store} ep {ref.index} {step}", fontsize=7,
                       color="red" if wrong else "black")
        axis.set_xticks([])
        axis.set_yticks([])
    if not picks:
        figure.add_subplot(1, 1, 1).text(0.5, 0.5, "no labelled frames", ha="center")
    figure.suptitle((title + "\n" if title else "") +
                    f"hardest held-out frames (threshold {threshold:.3f}; cameras: {', '.join(cameras)})", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings:
    """How :func:`train_classifier` trains (defaults of ``robot-rl reward train``)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment_pad: int = AUGMENT_PAD
    hidden: int = HIDDEN
    hold_out: float = 0.2
    seed: int = 0
    threshold: float | str = "auto"  # "auto" (auto_threshold on the training frames) or a number in (0, 1)
    max_fpr: float = MAX_FPR
    hold_steps: int = 1
    rule: LabelRule = field(default_factory=LabelRule)
    max_negatives: int | None = None
    # "sampling": every batch draws positives and negatives with equal probability (with replacement);
    # "pos_weight": plain shuffled epochs, positives weighted by negatives / positives in the loss
    balance: str = "sampling"
    clip_grad: float | None = None
    # encoder architecture (EncoderSpec fields other than cameras and image_shape), over CLASSIFIER_ENCODER
    encoder: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}")
        if self.threshold != "auto" and not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ValueError(f"threshold must be 'auto' or a number between 0 and 1, got {self.threshold!r}")
        if not 0.0 <= self.max_fpr < 1.0:
            raise ValueError(f"max_fpr must be in [0, 1), got {self.max_fpr}")
        if self.hold_steps < 1:
            raise ValueError(f"hold_steps must be at least 1, got {self.hold_steps}")
        if self.balance not in ("sampling", "pos_weight"):
            raise ValueError(f"balance must be 'sampling' or 'pos_weight', got {self.balance!r}")
        unknown = set(self.encoder) - {f.name for f in dataclasses.fields(EncoderSpec)}
        if unknown or {"cameras", "image_shape"} & set(self.encoder):
            raise ValueError(f"encoder settings {sorted(unknown | ({'cameras', 'image_shape'} & set(self.encoder)))} "
                             f"are not EncoderSpec architecture fields")


def open_stores(paths: Sequence[str | os.PathLike[str]]) -> list[Any]:
    from robot_rl.data.store import EpisodeStore

    if not paths:
        raise ClassifierError("no episode stores given")
    return [EpisodeStore.open(path, "r") for path in paths]


def _episode_counts(episodes: Sequence[EpisodeRef]) -> dict[str, int]:
    return {"successful": sum(ref.success for ref in episodes), "failed": sum(not ref.success for ref in episodes)}


def train_classifier(stores: Sequence[str | os.PathLike[str]], cameras: Sequence[str] | None = None,
                     proprio: Sequence[str] = (), settings: TrainSettings = TrainSettings(),
                     report_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> SuccessClassifier:
    """Train a classifier on the labelled frames of the stores' training episodes and report on
    the held-out ones; the report (also in ``classifier.report``) and, with ``report_dir``, a
    ``report.json`` and ``hardest_frames.png`` there. ``progress``: a tqdm bar on stderr."""
    started = time.monotonic()
    opened = open_stores(stores)
    keys, image_shape = data_spec(opened[0], cameras)
    proprio_keys = check_proprio_keys(proprio)
    missing = [key for key in proprio_keys if key not in opened[0].features]
    if missing:
        raise ClassifierError(f"{opened[0].path}: no proprio key {', '.join(missing)} in the store")
    spec = EncoderSpec(keys, image_shape, **{**CLASSIFIER_ENCODER, **dict(settings.encoder)})
    proprio_shapes = {key: opened[0].features[key].shape for key in proprio_keys}
    for store in opened:
        check_store(store, spec, proprio_shapes)
    episodes = list_episodes(opened)
    train_eps, held_eps = split_episodes(episodes, settings.hold_out, settings.seed)
    counts = _episode_counts(train_eps)
    if not counts["successful"] or not counts["failed"] and not any(ref.length > settings.rule.negative_margin
                                                                    for ref in train_eps):
        raise ClassifierError(f"the training episodes ({counts['successful']} successful, {counts['failed']} failed, "
                              f"of {len(episodes)} in {len(opened)} store(s)) give no "
                              f"{'positive' if not counts['successful'] else 'negative'} frames: a success classifier "
                              f"needs successful episodes and failed ones (or successful ones longer than "
                              f"negative_margin = {settings.rule.negative_margin} steps)")
    train = load_frames(opened, train_eps, keys, proprio_keys, settings.rule,
                        max_negatives=settings.max_negatives, seed=settings.seed)
    held = load_frames(opened, held_eps, keys, proprio_keys, settings.rule, keep_left_out=True) if held_eps else None
    n_pos, n_neg = int((train.labels == 1).sum()), int((train.labels == 0).sum())
    if not n_pos or not n_neg:
        raise ClassifierError(f"the training frames have {n_pos} positives and {n_neg} negatives; both are needed")

    torch.manual_seed(settings.seed)
    model = SuccessClassifier(spec, proprio_shapes, settings.hidden, settings.augment_pad)
    model.rule = settings.rule
    model.hold_steps = settings.hold_steps
    model.set_proprio_statistics(train.proprio)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    targets = torch.from_numpy((train.labels == 1).astype(np.float32))
    pos_weight = torch.tensor(n_neg / n_pos) if settings.balance == "pos_weight" else None
    # sampling: half the probability mass on the positives, half on the negatives
    weights = np.where(train.labels == 1, 0.5 / n_pos, 0.5 / n_neg)
    sampler = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.epochs * steps_per_epoch, desc="reward classifier", file=sys.stderr,
                   dynamic_ncols=True, unit="batch")
    losses = []
    model.train()
    try:
        for epoch in range(settings.epochs):
            if settings.balance == "pos_weight":
                order = torch.randperm(len(train), generator=generator).numpy()
            else:
                order = sampler.choice(len(train), size=len(train), p=weights)
            epoch_loss = 0.0
            for b in range(steps_per_epoch):
                rows = np.sort(order[b * settings.batch_size: (b + 1) * settings.batch_size])
                logits = model(train.batch(rows))
                loss = F.binary_cross_entropy_with_logits(logits, targets[rows], pos_weight=pos_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.clip_grad is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
                optimizer.step()
                epoch_loss += float(loss.detach()) * len(rows)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.4f}", refresh=False)
            losses.append(epoch_loss / len(train))
            if log is not None:
                log(f"epoch {epoch + 1}: loss {losses[-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    train_p = model.probabilities(train)
    if settings.threshold == "auto":
        model.threshold = auto_threshold(train_p, train.labels, settings.max_fpr)
        rule_text = f"auto: smallest threshold >= 0.5 with training FPR <= {settings.max_fpr}"
    else:
        model.threshold = float(settings.threshold)
        rule_text = "given"
    report: dict[str, Any] = {
        "stores": [str(store.path) for store in opened],
        "cameras": list(keys), "image_shape": list(image_shape), "proprio": list(proprio_keys),
        "label_rule": dataclasses.asdict(settings.rule),
        "episodes": {"train": counts, "held_out": _episode_counts(held_eps)},
        "frames": {"train": train.counts(), "held_out": held.counts() if held is not None else None},
        "threshold": model.threshold, "threshold_rule": rule_text, "hold_steps": model.hold_steps,
        "training": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                     "augment_pad": settings.augment_pad, "balance": settings.balance,
                     "positives_per_negative": n_pos / n_neg, "seed": settings.seed,
                     "hold_out": settings.hold_out, "loss_per_epoch": losses,
                     "encoder": dataclasses.asdict(spec)},
        "train": {**confusion_metrics(train_p >= model.threshold, train.labels == 1),
                  "roc_auc": roc_auc(train_p, train.labels == 1)},
        "held_out": None,
    }
    if held is not None and len(held):
        held_p = model.probabilities(held)
        report["held_out"] = evaluate(model, held, probabilities=held_p)
        if report_dir is not None:
            report["hardest_frames_png"] = str(plot_hardest_frames(
                held, held_p, model.threshold, Path(report_dir) / "hardest_frames.png",
                title=f"{len(held_eps)} held-out episodes of {', '.join(Path(s).name for s in report['stores'])}"))
    report["seconds"] = round(time.monotonic() - started, 1)
    model.report = _plain(report)
    if report_dir is not None:
        write_report(model.report, Path(report_dir) / "report.json")
    return model


def evaluate_stores(classifier: SuccessClassifier, stores: Sequence[str | os.PathLike[str]],
                    threshold: float | None = None, hold_steps: int | None = None,
                    report_dir: str | os.PathLike[str] | None = None,
                    rule: LabelRule | None = None) -> dict[str, Any]:
    """The held-out report of :func:`train_classifier` on every episode of other stores (which
    must have the classifier's cameras at its image shape, and its proprio keys)."""
    opened = open_stores(stores)
    for store in opened:
        check_store(store, classifier.spec, classifier.proprio)
    episodes = list_episodes(opened)
    frames = load_frames(opened, episodes, classifier.spec.cameras, tuple(classifier.proprio),
                         rule or classifier.rule, keep_left_out=True)
    p = classifier.probabilities(frames)
    report = {"classifier": classifier.path, "stores": [str(store.path) for store in opened],
              **evaluate(classifier, frames, threshold, hold_steps, probabilities=p),
              "left_out_frames": frames.counts()["left_out"]}
    if report_dir is not None:
        report["hardest_frames_png"] = str(plot_hardest_frames(
            frames, p, report["threshold"], Path(report_dir) / "hardest_frames.png",
            title=f"{len(episodes)} episodes of {', '.join(Path(s).name for s in report['stores'])}"))
        write_report(_plain(report), Path(report_dir) / "report.json")
    return _plain(report)


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(report), indent=2) + "\n")
    return path


def confusion_table(metrics: Mapping[str, Any]) -> str:
    """The confusion table of a report as text (rows: predicted; columns: truth)."""
    (tp, fp), (fn, tn) = metrics["confusion"]
    width = max(8, *(len(str(n)) for n in (tp, fp, fn, tn)))
    return (f"{'':<20}{'true success':>{width + 6}}{'true failure':>{width + 6}}\n"
            f"{'predicted success':<20}{'TP ' + str(tp):>{width + 6}}{'FP ' + str(fp):>{width + 6}}\n"
            f"{'predicted failure':<20}{'FN ' + str(fn):>{width + 6}}{'TN ' + str(tn):>{width + 6}}")


def relabel_rewards(classifier: SuccessClassifier, source: str | os.PathLike[str], out: str | os.PathLike[str],
                    threshold: float | None = None, hold_steps: int | None = None) -> dict[str, Any]:
    """Copy every episode of the store ``source`` to the new store ``out`` with the classifier's
    rewards: a step's reward is 1 where the classifier says success on the observation after its
    action (p ≥ threshold for ``hold_steps`` steps in a row), else 0, and the episode's success
    flag is that verdict at its last step; observations, actions, terminations, sources, seeds and
    labels are kept. So demonstrations recorded where a simulator gave the reward carry the
    reward a run with ``--reward classifier`` gives its own steps. Returns counts."""
    from robot_rl.data import EpisodeStore

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; relabelling writes a new store")
    reward = ClassifierReward(classifier, threshold, hold_steps)
    changed = successes = 0
    with EpisodeStore.open(source, "r") as store:
        reward.check_space(_StoreSpace(store))
        with EpisodeStore.create(out, store.features, store.obs_keys, store.user_attrs) as target:
            for index in range(store.n_episodes):
                episode = store.read_episode(index)
                after = {key: np.concatenate([episode.steps[key][1:], episode.final_obs[key][None]])
                         for key in reward.keys}
                verdict = gate(classifier.probabilities(after), reward.threshold, reward.hold_steps)
                steps = {**episode.steps, "reward": verdict.astype(np.float32)}
                changed += int(np.count_nonzero(steps["reward"] != episode.steps["reward"]))
                successes += bool(verdict[-1])
                target.append_episode(steps, episode.final_obs, bool(verdict[-1]), episode.source, episode.seed,
                                      episode.task, None if episode.label == "none" else episode.label)
            episodes = store.n_episodes
    return {"source": str(source), "out": str(out), "episodes": episodes, "successes": successes,
            "rewards_changed": changed, "threshold": reward.threshold, "hold_steps": reward.hold_steps}


class _StoreSpace:
    """A store's features as the ``spaces`` mapping :meth:`ClassifierReward.check_space` reads."""

    def __init__(self, store: Any) -> None:
        self.spaces = {key: _Shaped(spec.shape, spec.dtype) for key, spec in store.features.items()}


@dataclasses.dataclass(frozen=True)
class _Shaped:
    shape: tuple[int, ...]
    dtype: str
