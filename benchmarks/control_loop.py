"""Does the arm bridge's control loop keep its period when the machine is busy?

For each case a fresh sim bridge process (assembled like ``robot-rl bridge --robot sim --task
reach``, DDS on the loopback-only configuration) ticks at 500 Hz or 50 Hz for ``--seconds`` after a
1 s warm-up, while this process plays a 100 Hz client over DDS (joint position commands in, every
``joint_states`` message read). Each case runs idle and under a CPU burner (``--burners``
processes spinning in pure Python at the bridge's priority, so both cores are busy), and for each
loop variant:

* ``old``: the run loop of commit 72d07bf (before issue 11 item 5), copied below with lateness
  recording added: sleep to the deadline, no spin, a late tick catches up by running the next ticks
  back to back (up to 0.1 s behind), Python's default GC and 5 ms GIL switch interval;
* ``new``: ``ArmBridge.run`` with the default config (deadline grid, skip instead of burst,
  ``gc_freeze``, 0.5 ms GIL switch interval, no spin), default scheduling;
* ``new_realtime``: the same with ``realtime_scheduling`` (``robot-rl bridge --realtime``), SCHED_FIFO
  where permitted;
* ``--ablation`` adds one variant per idea: the skip policy alone, with ``gc_freeze`` or the switch
  interval alone, a 0.2 ms spin before each tick (with and without SCHED_FIFO), the nice-boost
  fallback (SCHED_FIFO refused), CPU pinning, and (with ``--cameras``) SCHED_FIFO with the camera
  thread left at its lowered priority (before ``ArmBridge._unlower_helper_threads``).

Per run: tick lateness (actual start minus scheduled start, ms: p50/p99/max), ticks late by a
period or more, bursts (ticks started less than a quarter period after the previous one), ticks late
by more than 5 periods (``deadline_misses`` for the new loop), the loop's own overrun count, the
tick's work time and the bridge process's CPU use. Medians over ``--repeats`` runs, cases
interleaved so that load changes hit every variant alike. JSON on stdout (and ``--json``).

    unshare -n sh -c 'ip link set lo up && python benchmarks/control_loop.py --json benchmarks/results/control_loop.json'

``unshare -n`` keeps every participant in a private network namespace; the script forces the
loopback-only Cyclone configuration before any participant exists either way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.hardware.transport import TransportConfig, use_loopback_network  # noqa: E402

DOMAIN_ID = 43
WARMUP = 1.0  # s of ticks not counted (start-up)
HOLD_PERIODS = 5.0  # lateness counted as a deadline miss, in periods (BridgeConfig.hold_after_late_periods)
CLIENT_HZ = 100.0

#: name -> (loop, BridgeConfig overrides, deny SCHED_FIFO in the bridge process, leave the helper
#: threads lowered under realtime scheduling as before ArmBridge._unlower_helper_threads)
VARIANTS: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "old": ("legacy", {}, False, False),
    "new": ("run", {}, False, False),
    "new_realtime": ("run", {"realtime_scheduling": True}, False, False),
}
ABLATION: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "skip_only": ("run", {"gc_freeze": False, "switch_interval": None}, False, False),
    "skip+gc_freeze": ("run", {"switch_interval": None}, False, False),
    "skip+switch_interval": ("run", {"gc_freeze": False}, False, False),
    "new+spin": ("run", {"spin": 2e-4}, False, False),
    "new+nice_fallback": ("run", {"realtime_scheduling": True}, True, False),
    "new+cpu1": ("run", {"loop_cpu": 1}, False, False),
    "new_realtime+spin": ("run", {"realtime_scheduling": True, "spin": 2e-4}, False, False),
    "new_realtime+cpu1": ("run", {"realtime_scheduling": True, "loop_cpu": 1}, False, False),
    "new_realtime+helpers_niced": ("run", {"realtime_scheduling": True}, False, True),
}


# ---------------------------------------------------------------------------- the bridge process
def legacy_run(bridge: Any, stop: threading.Event) -> Any:
    """``ArmBridge.run`` as of commit 72d07bf, with each tick's lateness recorded."""
    stats = bridge.stats
    deadline = bridge._last_fresh = time.perf_counter()
    while not stop.is_set():
        started, ticks = time.perf_counter(), stats.ticks
        lateness = started - deadline
        try:
            bridge.step()
        except Exception as exc:  # noqa: BLE001
            stats.ticks = ticks + 1
            bridge._step_failed(exc)
        stats.record_tick(time.perf_counter() - started, lateness)
        deadline += bridge.tick
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            stats.overruns += 1
            stats.worst_lateness = max(stats.worst_lateness, -delay)
            if -delay > 0.1:
                deadline = time.perf_counter()
    return stats


def bridge_process(variant: str, rate: float, seconds: float, domain_id: int, cameras: bool) -> dict[str, Any]:
    use_loopback_network(domain_id)  # before any participant exists
    import numpy as np

    from robot_rl.hardware.bridge import BridgeConfig
    from robot_rl.hardware.node import open_bridge

    loop, overrides, deny_fifo, helpers_niced = {**VARIANTS, **ABLATION}[variant]
    if helpers_niced:
        from robot_rl.hardware.bridge import ArmBridge

        ArmBridge._unlower_helper_threads = lambda *_: None
    if deny_fifo:  # what an unprivileged user gets: the bridge falls back to a nice boost
        def refuse(*_: Any) -> None:
            raise PermissionError(1, "Operation not permitted (denied by the benchmark)")

        os.sched_setscheduler = refuse
    camera_config = ({"cameras": ("scene", "wrist"), "image_height": 128, "image_width": 128, "image_hz": 10.0,
                      "compressed_images": True} if cameras else {})
    config = BridgeConfig(state_hz=rate, hold_after_late_periods=HOLD_PERIODS, **camera_config, **overrides,
                          transport=TransportConfig(backend="dds", network="loopback", domain_id=domain_id))
    with ExitStack() as stack:
        bridge = open_bridge("sim", "reach", config, stack)
        starts: list[float] = []
        step = bridge.step

        def timed_step() -> None:
            starts.append(time.perf_counter())
            step()

        bridge.step = timed_step
        print(json.dumps({"bridge": "ready"}), file=sys.stderr, flush=True)
        stop = threading.Event()
        timer = threading.Timer(WARMUP + seconds, stop.set)
        timer.start()
        cpu_before, begun = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        stats = legacy_run(bridge, stop) if loop == "legacy" else bridge.run(stop)
        cpu_after, ended = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        timer.cancel()
    period = 1.0 / rate
    begin = np.searchsorted(np.asarray(starts), begun + WARMUP)
    lateness = stats.tick_lateness()[begin - len(starts):] if begin < len(starts) else np.zeros(0)
    intervals = np.diff(np.asarray(starts[max(begin - 1, 0):]))
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    ms = lateness * 1e3
    return {
        "variant": variant, "rate_hz": rate, "cameras": cameras, "seconds": seconds,
        "ticks": int(lateness.size), "expected_ticks": int(round(seconds * rate)),
        "lateness_ms": {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3),
                        "max": round(float(ms.max()), 3)},
        "late_ticks": int(np.sum(lateness >= period)),  # a period or more late: their slot had passed
        "bursts": int(np.sum(intervals < 0.25 * period)),  # started within a quarter period of the previous one
        "over_hold": int(np.sum(lateness > HOLD_PERIODS * period)),
        "loop_overruns": stats.overruns, "ticks_skipped": stats.ticks_skipped, "deadline_misses": stats.deadline_misses,
        "tick_ms": stats.tick_ms(), "scheduling": stats.scheduling, "cpu_fraction": round(cpu / (ended - begun), 3),
    }


# ---------------------------------------------------------------------------- this process
class Client:
    """A 100 Hz client over DDS: joint position commands (small sine about the first pose it sees)
    and every ``joint_states`` read, so the bridge's transport thread calls back as in use."""

    def __init__(self, domain_id: int) -> None:
        import numpy as np

        from robot_rl.hardware import topics
        from robot_rl.hardware.transport import make_transport

        self._np = np
        self.transport = make_transport(TransportConfig(backend="dds", network="loopback", domain_id=domain_id))
        self.states = 0
        self._base: Any = None
        self._lock = threading.Lock()
        self.transport.subscribe(topics.JOINT_STATES, "sensor_msgs/msg/JointState", self._on_state)
        self._pub = self.transport.publisher(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-client", daemon=True)
        self._thread.start()

    def _on_state(self, message: Any) -> None:
        with self._lock:
            self.states += 1
            if self._base is None:
                self._base = self._np.array(message.position, dtype=float)

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.wait(1.0 / CLIENT_HZ):
            with self._lock:
                base = self._base
            if base is None:
                continue
            target = base.copy()
            target[0] += 0.05 * self._np.sin(time.perf_counter() - t0)
            self._pub.publish(self.transport.message("std_msgs/msg/Float64MultiArray", data=target.tolist()))

    def new_bridge(self) -> None:
        with self._lock:
            self._base = None  # each bridge starts at its own home pose

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.transport.close()


def run_case(variant: str, rate: float, seconds: float, domain_id: int, cameras: bool,
             client: Client | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, "--rates", str(rate), "--seconds", str(seconds),
               "--domain-id", str(domain_id)] + (["--cameras"] if cameras else [])
    for attempt in range(3):  # a bridge that fails to start is retried (e.g. a file edited meanwhile)
        if client is not None:
            client.new_bridge()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = process.communicate(timeout=WARMUP + seconds + 180)
        if process.returncode == 0:
            return json.loads(out.strip().splitlines()[-1])
        print(f"bridge case {variant} at {rate} Hz failed (attempt {attempt + 1}):\n{err[-2000:]}",
              file=sys.stderr, flush=True)
        time.sleep(30.0)
    raise RuntimeError(f"bridge case {variant} at {rate} Hz failed three times")


class Burners:
    """``n`` processes spinning in pure Python (started and stopped by PID)."""

    def __init__(self, n: int) -> None:
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(get: Any) -> float:
        return round(statistics.median(get(run) for run in runs), 3)

    return {
        "lateness_ms_p50": median(lambda r: r["lateness_ms"]["p50"]),
        "lateness_ms_p99": median(lambda r: r["lateness_ms"]["p99"]),
        "lateness_ms_max": median(lambda r: r["lateness_ms"]["max"]),
        "late_ticks": median(lambda r: r["late_ticks"]), "bursts": median(lambda r: r["bursts"]),
        "over_hold": median(lambda r: r["over_hold"]), "loop_overruns": median(lambda r: r["loop_overruns"]),
        "ticks": median(lambda r: r["ticks"]), "tick_ms_p99": median(lambda r: r["tick_ms"]["p99"]),
        "cpu_fraction": median(lambda r: r["cpu_fraction"]),
        "lateness_ms_p99_runs": [r["lateness_ms"]["p99"] for r in runs],
        "lateness_ms_max_runs": [r["lateness_ms"]["max"] for r in runs],
        "late_ticks_runs": [r["late_ticks"] for r in runs], "scheduling": sorted({r["scheduling"] for r in runs}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 50.0], help="bridge tick rates, Hz")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (after 1 s warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2, help="CPU-burner processes in the loaded case")
    parser.add_argument("--loads", nargs="+", choices=["idle", "burn"], default=["idle", "burn"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *ABLATION])
    parser.add_argument("--ablation", action="store_true", help="also every single idea (see the docstring)")
    parser.add_argument("--cameras", action="store_true", help="scene + wrist 128x128 at 10 Hz, JPEG too")
    parser.add_argument("--no-client", action="store_true", help="no 100 Hz DDS client")
    parser.add_argument("--domain-id", type=int, default=DOMAIN_ID)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(bridge_process(args.child, args.rates[0], args.seconds, args.domain_id, args.cameras)))
        return

    use_loopback_network(args.domain_id)  # before the client's participant
    from robot_rl.bench.env_bench import machine_info

    variants = list(dict.fromkeys(args.variants + (list(ABLATION) if args.ablation else [])))
    load_at_start = os.getloadavg()
    client = None if args.no_client else Client(args.domain_id)
    runs: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    try:
        for repeat in range(args.repeats):
            for load in args.loads:
                burners = Burners(args.burners) if load == "burn" else None
                try:
                    time.sleep(1.0)
                    for rate in args.rates:
                        for variant in variants:
                            result = run_case(variant, rate, args.seconds, args.domain_id, args.cameras, client)
                            runs.setdefault((load, rate, variant), []).append(result)
                            print(f"repeat {repeat} {load:4s} {rate:5.0f} Hz {variant:22s} lateness p99 "
                                  f"{result['lateness_ms']['p99']:7.3f} ms max {result['lateness_ms']['max']:7.2f} ms "
                                  f"late {result['late_ticks']:4d} bursts {result['bursts']:4d} "
                                  f"({result['scheduling']})", file=sys.stderr, flush=True)
                finally:
                    if burners is not None:
                        burners.stop()
    finally:
        if client is not None:
            client.close()
    in_namespace = [name for _, name in socket.if_nameindex()] == ["lo"]  # e.g. inside ``unshare -n``
    report = {
        "command": ("unshare -n sh -c 'ip link set lo up && " if in_namespace else "")
                   + " ".join(["python", "benchmarks/control_loop.py", *sys.argv[1:]]) + ("'" if in_namespace else ""),
        "machine": machine_info(), "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
        "settings": {"seconds": args.seconds, "warmup": WARMUP, "repeats": args.repeats, "burners": args.burners,
                     "client_hz": None if args.no_client else CLIENT_HZ, "cameras": args.cameras,
                     "hold_after_late_periods": HOLD_PERIODS},
        "cases": [{"load": load, "rate_hz": rate, "variant": variant, "median": summarise(results), "runs": results}
                  for (load, rate, variant), results in runs.items()],
    }
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
