"""Pictures of episodes for people: annotated MP4s and PNG frame strips.

:func:`run_episode` drives an env with a policy and keeps a rendered frame per step;
:func:`frame_strip` lays ~8 of them out in a captioned grid, :func:`annotate` labels video frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

STRIP_FRAMES = 8
STRIP_COLUMNS = 4
STRIP_TILE_WIDTH = 320
SUCCESS_COLOUR = (40, 170, 60)
FAILURE_COLOUR = (200, 60, 50)


class Policy(Protocol):
    """What :func:`run_episode` drives: a scripted expert, a learner wrapper or :class:`RandomPolicy`."""

    def reset(self) -> None: ...

    def act(self, observation: Any) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random actions from a seeded action space."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def reset(self) -> None:
        """Random actions carry no episode state."""

    def act(self, observation: Any) -> np.ndarray:
        return self.action_space.sample()


@dataclass(frozen=True)
class Frame:
    """One rendered image, after ``step`` env steps (0: just after reset)."""

    step: int
    success: bool
    image: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class EpisodeRecord:
    episode: int
    seed: int
    steps: int
    episode_return: float
    success: bool  # info["is_success"] at the last step, as the experts' evaluation counts it
    first_success_step: int | None
    frames: list[Frame]


def run_episode(env: Any, policy: Policy, episode: int, seed: int,
                render: Callable[[], np.ndarray], on_step: Callable[[], None]) -> EpisodeRecord:
    """Run one episode with ``policy`` (through the training loop's
    :func:`~robot_rl.training.rollout.run_episode`), rendering a frame after the reset and after
    every step."""
    from robot_rl.training.rollout import run_episode as rollout_episode

    frames: list[Frame] = []

    def keep_frame(info: dict[str, Any]) -> None:
        frames.append(Frame(len(frames), bool(info["is_success"]), render()))

    def after_step(info: dict[str, Any]) -> None:
        keep_frame(info)
        on_step()

    rollout = rollout_episode(env, policy, seed, on_reset=keep_frame, on_step=after_step)
    first_success = next((frame.step for frame in frames if frame.success), None)
    return EpisodeRecord(episode, seed, rollout.steps, rollout.total_reward, rollout.success, first_success, frames)


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def annotate(image: np.ndarray, text: str, success: bool) -> np.ndarray:
    """Copy of ``image`` with ``text`` on a dark band at the top (green when ``success``)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, image.shape[0] // 24))
    left, top, right, bottom = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((0, 0, right + 6, bottom + 4), fill=(0, 0, 0))
    draw.text((6, 4), text, font=font, fill=SUCCESS_COLOUR if success else (235, 235, 235))
    return np.asarray(picture)


def frame_strip(record: EpisodeRecord, title: str, max_steps: int) -> Any:
    """A grid of ~:data:`STRIP_FRAMES` frames spread evenly over the episode, each captioned with
    its step and success flag, under a title line; returns a PIL image."""
    from PIL import Image, ImageDraw

    frames = record.frames
    picks = sorted({int(i) for i in np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round()})
    columns = min(STRIP_COLUMNS, len(picks))
    rows = -(-len(picks) // columns)
    height, width = frames[0].image.shape[:2]
    tile_w, tile_h = STRIP_TILE_WIDTH, round(height * STRIP_TILE_WIDTH / width)
    caption_h, title_h, pad = 24, 32, 4
    sheet = Image.new("RGB", (columns * (tile_w + pad) + pad, title_h + rows * (caption_h + tile_h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad + 2, 7), title, font=_font(16), fill=(0, 0, 0))
    caption_font = _font(14)
    for index, pick in enumerate(picks):
        frame = frames[pick]
        x = pad + (index % columns) * (tile_w + pad)
        y = title_h + (index // columns) * (caption_h + tile_h + pad)
        draw.text((x + 2, y + 4), f"step {frame.step}/{max_steps}", font=caption_font, fill=(0, 0, 0))
        label, colour = ("success", SUCCESS_COLOUR) if frame.success else ("no success", FAILURE_COLOUR)
        label_w = draw.textlength(label, font=caption_font)
        draw.text((x + tile_w - label_w - 2, y + 4), label, font=caption_font, fill=colour)
        tile = Image.fromarray(frame.image).resize((tile_w, tile_h), Image.Resampling.LANCZOS)
        sheet.paste(tile, (x, y + caption_h))
    return sheet


def open_video(path: Path, fps: float) -> Any:
    """An imageio FFMPEG writer for an H.264 MP4 (frame sizes rounded to even numbers)."""
    import imageio.v2 as imageio

    return imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                              macro_block_size=2, ffmpeg_log_level="error")
