"""``robot-rl reward``: success classifiers on camera frames, a reward without simulator state.

``reward train`` fits a :class:`~robot_rl.vision.reward_classifier.SuccessClassifier` on the
labelled episodes of episode stores and reports on held-out episodes; ``reward eval`` gives the
same report on other stores; ``reward info`` prints what a classifier file holds. The report (JSON)
goes to stdout, a short summary and the progress bar to stderr, and ``report.json`` plus
``hardest_frames.png`` to the report directory. Frame labels, the threshold rule and the file
format are described in :mod:`robot_rl.vision.reward_classifier`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from robot_rl.cli.common import CommandError, non_negative_int, positive_float, positive_int, print_json

# robot_rl.vision.reward_classifier's defaults, repeated so that building the parser imports no torch
# (a test checks that they agree).
PROPRIO_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_width")
POSITIVE_TAIL = 5
NEGATIVE_MARGIN = 30
MAX_FPR = 0.01


def threshold_value(text: str) -> float | str:
    """argparse type: ``auto`` or a number strictly between 0 and 1."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = threshold_value(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("expected a number between 0 and 1")
    return float(value)


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_lines(name: str, report: dict[str, Any]) -> list[str]:
    """Human-readable lines of a frame report (held-out or eval)."""
    from robot_rl.vision.reward_classifier import confusion_table

    episodes = report["episodes"]
    lines = [f"{name}: {report['frames']} labelled frames ({report['positives']} success, {report['negatives']} "
             f"failure), threshold {report['threshold']:.3f}",
             f"precision {_fmt(report['precision'])}  recall {_fmt(report['recall'])}  "
             f"false-positive rate {_fmt(report['false_positive_rate'])}  accuracy {_fmt(report['accuracy'])}  "
             f"ROC AUC {_fmt(report['roc_auc'])}",
             confusion_table(report),
             f"episodes (success held for {episodes['hold_steps']} step(s)): detected in {episodes['detected']} of "
             f"{episodes['successful']} successful, false alarm in {episodes['false_alarms']} of {episodes['failed']} "
             f"failed"]
    return lines


def _report_dir(args: argparse.Namespace, default: Path) -> Path:
    return args.report_dir if args.report_dir is not None else default


def reward_train(args: argparse.Namespace) -> int:
    from robot_rl.vision.reward_classifier import LabelRule, TrainSettings, train_classifier

    if args.out.exists() and not args.overwrite:
        raise CommandError(f"--out {args.out} already exists; choose another path or pass --overwrite")
    if args.negative_margin < args.positive_tail:
        raise CommandError(f"--negative-margin ({args.negative_margin}) must be at least --positive-tail "
                           f"({args.positive_tail})")
    encoder = {name: getattr(args, name) for name in ("trunk", "channels", "conv_layers", "strided_layers",
                                                      "feature_dim", "pool") if getattr(args, name) is not None}
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hold_out=args.hold_out,
                             seed=args.seed, threshold=args.threshold, max_fpr=args.max_fpr,
                             hold_steps=args.hold_steps, rule=LabelRule(args.positive_tail, args.negative_margin),
                             max_negatives=args.max_negatives, balance=args.balance, encoder=encoder)
    report_dir = _report_dir(args, args.out.parent / f"{args.out.stem}_report")
    classifier = train_classifier(args.data, args.cameras, args.proprio or (), settings, report_dir=report_dir,
                                  progress=not args.quiet)
    classifier.save(args.out)
    report = {"classifier": str(args.out), "report_dir": str(report_dir), **classifier.report}
    print_json(report, indent=2)
    held = classifier.report.get("held_out")
    lines = [f"saved {args.out} ({classifier.describe()}); report in {report_dir}"]
    lines += summary_lines("held-out", held) if held else ["no held-out episodes (--hold-out 0): no report"]
    print("\n".join(lines), file=sys.stderr)
    return 0


def reward_eval(args: argparse.Namespace) -> int:
    from robot_rl.vision.reward_classifier import LabelRule, SuccessClassifier, evaluate_stores

    classifier = SuccessClassifier.load(args.classifier)
    rule = None
    if args.positive_tail is not None or args.negative_margin is not None:
        rule = LabelRule(classifier.rule.positive_tail if args.positive_tail is None else args.positive_tail,
                         classifier.rule.negative_margin if args.negative_margin is None else args.negative_margin)
    report = evaluate_stores(classifier, args.data, args.threshold, args.hold_steps, args.report_dir, rule)
    print_json(report, indent=2)
    print("\n".join(summary_lines("eval", report)), file=sys.stderr)
    return 0


def reward_relabel(args: argparse.Namespace) -> int:
    from robot_rl.vision.reward_classifier import SuccessClassifier, relabel_rewards

    classifier = SuccessClassifier.load(args.classifier)
    print_json(relabel_rewards(classifier, args.data, args.out, args.threshold, args.hold_steps), indent=2)
    return 0


def reward_info(args: argparse.Namespace) -> int:
    from robot_rl.vision.reward_classifier import SuccessClassifier

    classifier = SuccessClassifier.load(args.classifier)
    report = classifier.report
    print_json({"classifier": str(args.classifier), "reads": classifier.describe(),
                "cameras": list(classifier.spec.cameras), "image_shape": list(classifier.spec.image_shape),
                "proprio": {key: list(shape) for key, shape in classifier.proprio.items()},
                "threshold": classifier.threshold, "hold_steps": classifier.hold_steps,
                "encoder": report.get("training", {}).get("encoder"), "stores": report.get("stores"),
                "held_out": report.get("held_out")}, indent=2)
    return 0


def add_reward_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "reward", help="success classifiers on camera frames (a reward without simulator state)",
        description="Train and evaluate binary success classifiers on camera frames (+ optionally the robot's "
                    "own state) from labelled episode stores; a run uses one with "
                    "robot-rl train --reward classifier:PATH.")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)

    labels = ("Frames: an episode succeeded if a person labelled it success, or (unlabelled) if the env said so. "
              "Positives: its final observation and last --positive-tail steps; negatives: every frame of a failed "
              "episode and the frames of a successful one before its last --negative-margin steps; the frames in "
              "between are left out.")
    train = commands.add_parser(
        "train", help="train a success classifier on labelled episode stores",
        description="Train a success classifier on the camera frames of episode stores (stores recorded with "
                    "--set observation.images=true). " + labels + " Whole episodes (--hold-out, drawn with --seed "
                    "among successful and failed episodes apart) are held out for the report: precision, recall, "
                    "false-positive rate, accuracy, ROC AUC, the confusion table, episode-level detections and "
                    "false alarms with the hold gate, and a PNG of the hardest held-out frames. The report is "
                    "printed as JSON on stdout and written to --report-dir with the PNG.")
    train.add_argument("--data", type=Path, nargs="+", required=True, metavar="STORE",
                       help="episode stores (*.zarr) with camera images and successful and failed episodes")
    train.add_argument("--out", type=Path, required=True, metavar="PATH", help="classifier file to write (*.pt)")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.add_argument("--cameras", nargs="+", metavar="CAMERA",
                       help="cameras to use, e.g. scene wrist (default: every camera of the stores)")
    train.add_argument("--proprio", nargs="+", metavar="KEY", choices=PROPRIO_KEYS,
                       help=f"robot-state keys to use besides the cameras: {' '.join(PROPRIO_KEYS)} (default: none)")
    train.add_argument("--epochs", type=positive_int, default=10, help="(default: 10)")
    train.add_argument("--batch-size", type=positive_int, default=128, help="(default: 128)")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    train.add_argument("--threshold", type=threshold_value, default="auto",
                       help="success threshold on p, or auto: the smallest threshold >= 0.5 whose false-positive "
                            "rate on the training frames is at most --max-fpr (default: auto)")
    train.add_argument("--max-fpr", type=fraction, default=MAX_FPR,
                       help=f"--threshold auto: largest training false-positive rate (default: {MAX_FPR})")
    train.add_argument("--hold-steps", type=positive_int, default=1,
                       help="steps p must stay above the threshold before it counts as success; saved as the "
                            "classifier's default and used for the episode figures (default: 1)")
    train.add_argument("--hold-out", type=fraction, default=0.2,
                       help="fraction of the episodes held out for the report (default: 0.2)")
    train.add_argument("--seed", type=non_negative_int, default=0, help="hold-out draw, initialisation, batches "
                                                                        "(default: 0)")
    train.add_argument("--positive-tail", type=non_negative_int, default=POSITIVE_TAIL,
                       help=f"(default: {POSITIVE_TAIL})")
    train.add_argument("--negative-margin", type=non_negative_int, default=NEGATIVE_MARGIN,
                       help=f"(default: {NEGATIVE_MARGIN})")
    train.add_argument("--balance", choices=("sampling", "pos_weight"), default="sampling",
                       help="sampling: batches draw success and failure frames with equal probability; pos_weight: "
                            "plain epochs, success frames weighted in the loss (default: sampling)")
    train.add_argument("--max-negatives", type=positive_int, metavar="N",
                       help="use at most N negative frames, drawn at random (big replay stores; default: all)")
    train.add_argument("--trunk", choices=("conv", "resnet10", "resnet18"), help="camera trunk (default: conv)")
    train.add_argument("--channels", type=positive_int, help="conv trunk: filters per layer (default: 32)")
    train.add_argument("--conv-layers", type=positive_int, help="conv trunk: convolutions (default: 4)")
    train.add_argument("--strided-layers", type=positive_int,
                       help="conv trunk: how many of the first convolutions have stride 2 (default: 2)")
    train.add_argument("--pool", choices=("spatial_softmax", "spatial_embedding", "flatten"),
                       help="pooling of each camera's feature maps (default: flatten)")
    train.add_argument("--feature-dim", type=positive_int, help="features per camera (default: 64)")
    train.add_argument("--report-dir", type=Path, metavar="DIR",
                       help="where report.json and hardest_frames.png go (default: <out without .pt>_report "
                            "beside --out)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=reward_train)

    evaluate = commands.add_parser(
        "eval", help="report a classifier's precision, recall and false-positive rate on other stores",
        description="The held-out report of reward train on every episode of other stores (which must have the "
                    "classifier's cameras at its image size, and its proprio keys). " + labels)
    evaluate.add_argument("--classifier", type=Path, required=True, metavar="PATH")
    evaluate.add_argument("--data", type=Path, nargs="+", required=True, metavar="STORE")
    evaluate.add_argument("--threshold", type=probability, help="(default: the classifier's)")
    evaluate.add_argument("--hold-steps", type=positive_int, help="(default: the classifier's)")
    evaluate.add_argument("--positive-tail", type=non_negative_int, help="(default: the classifier's)")
    evaluate.add_argument("--negative-margin", type=non_negative_int, help="(default: the classifier's)")
    evaluate.add_argument("--report-dir", type=Path, metavar="DIR",
                          help="also write report.json and hardest_frames.png there")
    evaluate.set_defaults(handler=reward_eval)

    relabel = commands.add_parser(
        "relabel", help="copy a store with the classifier's rewards",
        description="Write a new store with every episode of --data, its rewards replaced by the classifier's "
                    "verdict on the observation after each action (1 once p >= threshold for hold-steps steps in "
                    "a row, else 0) and its success flag by the verdict at its last step: demonstrations then "
                    "carry the reward that robot-rl train --reward classifier:PATH gives the run's own steps.")
    relabel.add_argument("--classifier", type=Path, required=True, metavar="PATH")
    relabel.add_argument("--data", type=Path, required=True, metavar="STORE")
    relabel.add_argument("--out", type=Path, required=True, metavar="STORE", help="the new store (must not exist)")
    relabel.add_argument("--threshold", type=probability, help="(default: the classifier's)")
    relabel.add_argument("--hold-steps", type=positive_int, help="(default: the classifier's)")
    relabel.set_defaults(handler=reward_relabel)

    info = commands.add_parser("info", help="what a classifier file holds",
                               description="Cameras, image shape, proprio keys, threshold, hold steps and the "
                                           "held-out report of a classifier file, as JSON.")
    info.add_argument("--classifier", type=Path, required=True, metavar="PATH")
    info.set_defaults(handler=reward_info)
