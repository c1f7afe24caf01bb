"""`flight-sim`: replay recorded flights and scripted surveys as a live MAVLink vehicle with a camera.

    flight-sim replay FILE.tlog --speed 10 --out udp:127.0.0.1:14550
    flight-sim survey --scenario configs/scenarios/default.yaml --speed 10 --out tcp:127.0.0.1:5760
    flight-sim survey --scenario S.yaml --plan survey.plan    (a QGroundControl .plan's waypoints)
    flight-sim render --scenario configs/scenarios/default.yaml --out frames/
    flight-sim validate-config configs/scenarios/default.yaml
    flight-sim random-scenario --seed 3 --out scenario.yaml

Each running command prints progress and runs until the flight ends (or Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flight_sim.clock import MAX_SPEED, MIN_SPEED
from flight_sim.render import tile_truth
from flight_sim.scenario import Scenario, load_scenario, plan_scenario, random_scenario, scenario_to_yaml
from flight_sim.sim import CameraRig, Simulation
from flight_sim.stream import ImageFolderWriter, VideoFileWriter
from flight_sim.survey import survey_timeline
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog, write_tlog
from payload.cliutil import run_cli
from payload.errors import UserError
from payload.geo.camerapresets import PRESETS
from payload.logsetup import add_log_level_argument, setup_logging

log = logging.getLogger("flight_sim")


def _speed(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number, got {text!r}") from None
    if not MIN_SPEED <= v <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"speed must be between {MIN_SPEED} and {MAX_SPEED:g}, got {v:g}")
    return v


def _common_run(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--speed", type=_speed, default=1.0, help="times real time, 0.1-50 (default 1)")
    p.add_argument(
        "--out", default=default_out, help=f"udp:HOST:PORT sends there, tcp:HOST:PORT listens (default {default_out})"
    )
    p.add_argument(
        "--start", type=float, default=None, help="start this many s into the flight (default: when telemetry begins)"
    )
    p.add_argument("--end", type=float, default=None, help="end this many seconds into the flight")
    p.add_argument("--at-end", choices=("stop", "hold", "loop"), default="stop", help="what to do at the end")
    p.add_argument("--wait-client", action="store_true", help="hold the flight at its start until a client talks")
    p.add_argument(
        "--gcs", default=None,
        help="a ground station's link as well: udp:HOST:PORT sends there (QGroundControl listens on 14550), "
        "tcp:HOST:PORT listens; the payload's messages (its camera) are routed to it, as ArduPilot does")
    p.add_argument("--camera-host", default="127.0.0.1", help="where the camera stream listens")
    p.add_argument("--camera-port", type=int, default=8090, help="camera stream port (0: any free port)")
    p.add_argument(
        "--max-camera-fps", type=float, default=30.0, help="cap on frames streamed per wall-clock second (default 30)"
    )
    p.add_argument(
        "--restamp-time",
        action="store_true",
        help="stamp time_boot_ms/time_usec with the wall clock, for the payload's clock sync at speed != 1 "
        "(survey: on whenever speed != 1)",
    )
    p.add_argument(
        "--rate-requests",
        choices=("ardupilot", "ignore", "unsupported"),
        default="ardupilot",
        help="how the vehicle answers MAV_CMD_SET_MESSAGE_INTERVAL: ardupilot (accept, stream at the requested rate), "
        "ignore (never answer), unsupported (answer UNSUPPORTED); REQUEST_DATA_STREAM is honoured by all three",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flight-sim",
        description="Replay recorded flights and scripted surveys as a live MAVLink vehicle, with a camera "
        "over a procedural crop with known disease patches.",
    )
    add_log_level_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="replay a recorded telemetry log (.tlog) as a live vehicle")
    p.add_argument("tlog", help="the .tlog file")
    p.add_argument("--sysid", type=int, default=None, help="system to impersonate (default: first autopilot)")
    p.add_argument("--scenario", default=None, help="also serve a camera over this scenario's field")
    _common_run(p, "udp:127.0.0.1:14550")

    p = sub.add_parser("survey", help="fly a scripted lawnmower survey of a scenario, with its camera stream")
    p.add_argument("--scenario", required=True, help="scenario YAML file")
    p.add_argument("--write-tlog", default=None, help="also write the survey as a tlog to this path")
    p.add_argument("--plan", default=None, help="fly this QGroundControl .plan's waypoints (its altitude and speed) "
                   "instead of the scenario's flight")
    _common_run(p, "tcp:127.0.0.1:5760")

    p = sub.add_parser("render", help="render a flight's camera frames to an image folder (and a video)")
    p.add_argument("--scenario", required=True, help="scenario YAML file")
    p.add_argument("--out", required=True, help="folder for the JPEG frames and frames.csv")
    p.add_argument("--tlog", default=None, help="render a recorded flight instead of the scripted survey")
    p.add_argument("--plan", default=None, help="render the flight of this QGroundControl .plan's waypoints")
    p.add_argument("--fps", type=float, default=None, help="frames per flight second (default: the camera's fps)")
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--end", type=float, default=None)
    p.add_argument("--video", default=None, help="also write an MJPG .avi here")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("validate-config", help="check a scenario YAML file and print it resolved")
    p.add_argument("config", help="scenario YAML file")

    p = sub.add_parser("random-scenario", help="write a scenario drawn from a seed (crop, stage, light, camera)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="YAML file to write")
    p.add_argument("--target-gsd-mm", type=float, default=20.0,
                   help="fly where a tile reaches this many mm per model-input pixel (a bundle card's working_gsd_mm; "
                   "default 20)")
    p.add_argument("--input-px", type=int, default=224, help="the model's input size in pixels (default 224)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="camera preset (default: drawn)")
    return parser


def _describe(tl: Timeline) -> None:
    log.info(
        "vehicle: system %d component %d, MAV_TYPE %d, %d params, %.1f s, %d messages (%s)",
        tl.sysid, tl.compid, tl.vehicle_type, len(tl.params), tl.duration, len(tl.events), ", ".join(tl.names()),
    )  # fmt: skip
    for n in tl.notes:
        log.info("%s", n)


def _run(sim: Simulation, no_progress: bool) -> int:
    """Run a started simulation until its flight ends (or Ctrl-C), showing progress."""
    clock = sim.clock
    total = clock.end_s - clock.start_s
    bar = tqdm(total=round(total, 1), unit="s", desc="flight", disable=no_progress, file=sys.stderr)
    try:
        while not sim.vehicle.done.is_set():
            time.sleep(0.5)
            if sim.vehicle.error is not None:
                raise sim.vehicle.error
            bar.n = round(clock.now() - clock.start_s, 1)
            post = {"sent": sum(sim.vehicle.sent_counts.values())}
            if sim.streamer is not None:
                post["frames"] = sim.streamer.frames
                post["viewers"] = sim.server.clients if sim.server else 0
            if clock.at_end == "loop":
                post["lap"] = clock.lap()
            bar.set_postfix(post)
            bar.refresh()
        bar.n = round(total, 1)
        bar.refresh()
    finally:
        bar.close()
        sim.stop()
    if sim.vehicle.error is not None:
        raise sim.vehicle.error
    texts = sim.vehicle.statustexts()
    log.info("flight ended; sent %s; received %d STATUSTEXT", dict(sim.vehicle.sent_counts), len(texts))
    return 0


def _start(sim: Simulation) -> None:
    sim.start()
    print(f"vehicle: {sim.vehicle_url}  (dronekit.connect('{sim.vehicle_url}', wait_ready=True))", flush=True)
    if sim.camera_url:
        print(f"camera: {sim.camera_url}  (cv2.VideoCapture('{sim.camera_url}'))", flush=True)
    if sim.vehicle.gcs_url:
        print(f"ground station link: {sim.vehicle.gcs_url}  (the vehicle's stream and the payload's messages)",
              flush=True)


def _scenario(args: argparse.Namespace) -> Scenario:
    """The scenario file, flying `--plan` when one is given."""
    s = load_scenario(args.scenario)
    return plan_scenario(s, args.plan) if getattr(args, "plan", None) else s


def _render(args: argparse.Namespace) -> int:
    s = _scenario(args)
    tl = read_tlog(args.tlog) if args.tlog else survey_timeline(s)
    rig = CameraRig.build(s, tl)
    fps = args.fps or s.camera.fps
    if fps <= 0:
        raise UserError(f"--fps must be positive, got {fps}")
    end = tl.duration if args.end is None else min(args.end, tl.duration)
    times = np.arange(args.start, end + 1e-9, 1.0 / fps)
    out = Path(args.out)
    images = ImageFolderWriter(out, tl.t0_unix, s.camera.jpeg_quality)
    video = VideoFileWriter(args.video, fps) if args.video else None
    rows, cols = s.camera.tile_rows, s.camera.tile_cols
    n = 0
    try:
        with (out / "frames.csv").open("w", encoding="utf-8") as fh:
            fh.write("file,t_s,unix_time,lat,lon,alt_m,roll_rad,pitch_rad,yaw_rad,tiles\n")
            for t in tqdm(times, unit="frame", disable=args.no_progress, file=sys.stderr):
                q = tl.pose_at(float(t))
                rgb = rig.camera.render_at(float(t))
                truth = tile_truth(rig.renderer.render_labels(q), rows, cols, s.camera.tile_overlap)
                p = images.write(float(t), rgb)
                if video is not None:
                    video.write(rgb)
                tiles = "/".join(" ".join(row) for row in truth)
                fh.write(
                    f"{p.name},{t:.3f},{tl.t0_unix + t:.3f},{q.lat_deg:.8f},{q.lon_deg:.8f},{q.alt_m:.3f},"
                    f"{q.roll_rad:.6f},{q.pitch_rad:.6f},{q.yaw_rad:.6f},{tiles}\n"
                )
                n += 1
    finally:
        if video is not None:
            video.close()
    (out / "scenario.yaml").write_text(scenario_to_yaml(s), encoding="utf-8")
    print(f"wrote {n} frames to {out} (true poses and per-tile truth in frames.csv)")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "validate-config":
        s = load_scenario(args.config)
        print(s.model_dump_json(indent=2, by_alias=True))
        return 0
    if args.command == "random-scenario":
        if not 0.1 <= args.target_gsd_mm <= 500:
            raise UserError(f"--target-gsd-mm must be between 0.1 and 500 mm per pixel, got {args.target_gsd_mm:g}")
        s = random_scenario(args.seed, target_gsd_mm=args.target_gsd_mm, input_px=args.input_px, preset=args.preset)
        Path(args.out).write_text(scenario_to_yaml(s), encoding="utf-8")
        print(f"wrote {args.out}")
        return 0
    if args.command == "render":
        return _render(args)
    common = dict(
        start_s=args.start,
        end_s=args.end,
        at_end=args.at_end,
        wait_for_client=args.wait_client,
        camera_host=args.camera_host,
        camera_port=args.camera_port,
        max_camera_fps=args.max_camera_fps,
        restamp_time=args.restamp_time,
        gcs=args.gcs,
        rate_requests=args.rate_requests,
    )
    if args.command == "replay":
        tl = read_tlog(args.tlog, sysid=args.sysid)
        _describe(tl)
        scenario = load_scenario(args.scenario) if args.scenario else None
        sim = Simulation(tl, args.out, args.speed, scenario=scenario, **common)  # type: ignore[arg-type]
    elif args.command == "survey":
        s = _scenario(args)
        tl = survey_timeline(s)
        _describe(tl)
        if args.write_tlog:
            write_tlog(tl, args.write_tlog)
            log.info("survey written to %s", args.write_tlog)
        common["restamp_time"] = args.restamp_time or args.speed != 1.0
        sim = Simulation(tl, args.out, args.speed, scenario=s, **common)  # type: ignore[arg-type]
    else:  # pragma: no cover - argparse restricts the choices
        raise AssertionError(args.command)
    _start(sim)
    return _run(sim, args.no_progress)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
