"""``robot-rl bridge``: serve the simulated arm, its reality-gap twin or a real ros2_control arm on
ROS 2 topics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from robot_rl.cli.common import CommandError, add_set_option, positive_float, task_name
from robot_rl.cli.estop import add_estop_command
from robot_rl.config import deep_merge, parse_overrides


def bridge(args: argparse.Namespace) -> int:
    from robot_rl.hardware.node import load_bridge_config, serve

    robot = args.robot
    if robot != "sim" and not Path(robot).is_file():
        raise CommandError(f"--robot must be 'sim' or a hardware config YAML (e.g. hardware/configs/franka.yaml); "
                           f"{robot!r} is neither")
    twin = None
    if args.twin is not None:
        if robot != "sim":
            raise CommandError(f"--twin stands in for a real arm in simulation; it cannot be used with --robot {robot}")
        from robot_rl.hardware.twin import load_twin_profile

        twin = load_twin_profile(args.twin)
    shortcuts: dict[str, Any] = {}
    for key, value in (("state_hz", args.state_hz), ("time_scale", args.time_scale),
                       ("publish_clock", args.clock or None),
                       ("cameras", args.cameras), ("compressed_images", args.compressed or None),
                       ("events_log", args.events_log and str(args.events_log)),
                       ("realtime_scheduling", args.realtime or None), ("loop_cpu", args.loop_cpu)):
        if value is not None:
            shortcuts[key] = value
    transport = {key: value for key, value in (("backend", args.backend), ("domain_id", args.domain_id),
                                                ("network", args.network), ("namespace", args.namespace))
                 if value is not None}
    if transport:
        shortcuts["transport"] = transport
    config = load_bridge_config(args.config, deep_merge(shortcuts, parse_overrides(args.overrides)), robot, twin)

    def ready(node: Any) -> None:
        print(json.dumps({"bridge": "ready", "robot": robot, "task": args.task, "joints": list(node.robot.spec.joint_names),
                          "state_hz": node.config.state_hz, "backend": type(node.transport).__name__,
                          "namespace": config.transport.namespace or "/", "domain_id": config.transport.domain_id,
                          "network": config.transport.network, "realtime_scheduling": config.realtime_scheduling,
                          "twin": twin.name if twin is not None else None, "time_scale": config.time_scale,
                          "publish_clock": config.publish_clock}),
              file=sys.stderr, flush=True)

    stats = serve(robot, task_name(args.task), config, args.duration, on_ready=ready, twin=twin)
    tick_ms, lateness_ms = stats.tick_ms(), stats.lateness_ms()
    print(json.dumps({"bridge": "stopped", "ticks": stats.ticks, "overruns": stats.overruns,
                      "ticks_skipped": stats.ticks_skipped, "deadline_misses": stats.deadline_misses,
                      "lateness_p50_ms": lateness_ms["p50"], "lateness_p99_ms": lateness_ms["p99"],
                      "worst_lateness_ms": round(stats.worst_lateness * 1e3, 3), "scheduling": stats.scheduling,
                      "stale_ticks": stats.stale_ticks,
                      "commands_received": stats.commands_received, "commands_rejected": stats.commands_rejected,
                      "resets_received": stats.resets_received, "received_by_kind": stats.received_by_kind,
                      "rejected_by_kind": stats.rejected_by_kind,
                      "step_errors": stats.step_errors, "tick_p50_ms": tick_ms["p50"], "tick_p99_ms": tick_ms["p99"],
                      "tick_max_ms": tick_ms["max"], "frames_published": stats.frames_published,
                      "frames_dropped": stats.frames_dropped, "camera_errors": stats.camera_errors}),
          file=sys.stderr, flush=True)
    return 0


def add_bridge_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bridge", help="serve an arm (simulated or real) on ROS 2 topics",
        description="Run the arm bridge node: the MuJoCo arm (--robot sim; with --twin PROFILE, a reality-gap twin "
                    "whose physics, latency, noise and timing differ from the training sim's) or a real "
                    "ros2_control arm (--robot hardware/configs/<arm>.yaml) behind standard ROS 2 topics (joint_states, "
                    "forward_position_controller/commands, joint_trajectory_controller/joint_trajectory, "
                    "robot_rl/tool_target, robot_rl/estop, ...; see robot_rl.hardware.topics), with the safety "
                    "supervisor between every command and the arm. Uses rclpy where ROS 2 is sourced, otherwise "
                    "the cyclonedds wheel with ROS 2 wire conventions. By default DDS stays on the loopback "
                    "interface (--network loopback); use --network system to talk to other machines with your "
                    "own CYCLONEDDS_URI. Stops cleanly on Ctrl-C / SIGTERM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--robot", default="sim", help="'sim' or a hardware config YAML")
    parser.add_argument("--task", default="reach", help="scene of the simulated arm: reach | push | pick | peg")
    parser.add_argument("--config", type=Path, help="bridge config YAML (BridgeConfig: rates, safety, transport)")
    parser.add_argument("--twin", metavar="PROFILE",
                        help="serve the simulated arm as a reality-gap twin: a profile shipped in hardware/twins "
                             "(default: roughly a Franka/UR class arm on a real network; identical: no gap) or a "
                             "profile YAML; its bridge section (state_hz, time_scale, ...) is layered under these flags")
    parser.add_argument("--state-hz", type=positive_float, help="ticks per second (state published, command applied)")
    parser.add_argument("--time-scale", type=positive_float, metavar="X",
                        help="sim seconds per wall second (simulation; > 1: faster than real time, and /clock is "
                             "published unless --set publish_clock=false)")
    parser.add_argument("--clock", action="store_true", help="publish sim time on /clock")
    parser.add_argument("--cameras", nargs="+", metavar="CAMERA", help="simulated cameras to publish (scene, wrist)")
    parser.add_argument("--compressed", action="store_true", help="also publish JPEG CompressedImage")
    parser.add_argument("--events-log", type=Path, help="append safety events to this JSON-lines file")
    parser.add_argument("--backend", choices=["auto", "dds", "rclpy"], help="transport (auto: rclpy if importable)")
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID / DDS domain")
    parser.add_argument("--network", choices=["loopback", "system"],
                        help="loopback: DDS only on 127.0.0.1; system: your CYCLONEDDS_URI / ROS settings")
    parser.add_argument("--namespace", help="namespace of every relative topic, e.g. /arm1")
    parser.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    parser.add_argument("--realtime", action="store_true",
                        help="SCHED_FIFO for the control loop thread (bridge.realtime_priority, 50) where permitted "
                             "(root, CAP_SYS_NICE or an rtprio limit); otherwise a nice boost or nothing, logged")
    parser.add_argument("--loop-cpu", type=int, metavar="CPU", help="pin the control loop thread to this CPU")
    add_set_option(parser, "safety.command_timeout=1.0 safety.max_tool_speed=0.3 (a hardware config's "
                           "safety section is the base these override)")
    parser.set_defaults(handler=bridge)
    add_estop_command(parser.add_subparsers(dest="bridge_command", metavar="COMMAND", title="commands"))
