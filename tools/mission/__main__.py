"""`python -m tools.mission`: fly a scenario with the real payload and score it (`make demo`, `make mission`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flight_sim.indoor import is_indoor
from payload.cliutil import run_cli
from payload.logsetup import add_log_level_argument, setup_logging
from tools.coral import add_modelled_coral_arguments
from tools.mission.run import SCORE_KEYS, MissionPlan, rescore, run_mission, treatment_line


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.mission",
        description="Fly a simulated survey (or a recorded tlog) over a scenario's field with the real payload, "
        "then score the zones it found and its coverage against the true disease patches.",
    )
    ap.add_argument("--scenario", type=Path, default=Path("configs/scenarios/default.yaml"))
    ap.add_argument("--out", type=Path, default=Path("build/demo"))
    ap.add_argument("--bundle", type=Path, default=None,
                    help="model bundle (default: build/bundle from `make edgetpu` when present, else "
                    "build/quick_bundle, built with the quick profile when missing)")
    ap.add_argument("--tlog", type=Path, default=None, help="fly this recorded flight over the field instead")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="simulation speed (1 = real time, as the payload's clock mapping expects)")
    ap.add_argument("--start", type=float, default=None, help="fly only from this flight second (tlogs are long)")
    ap.add_argument("--end", type=float, default=None, help="fly only up to this flight second")
    ap.add_argument("--score-only", action="store_true",
                    help="do not fly: score the zones and coverage already in --out (e.g. a fused `payload export`)")
    add_modelled_coral_arguments(ap)
    ap.add_argument("--tile-choice", choices=("map", "all"), default="map",
                    help="when the chip cannot classify every tile: the map chooses them (map) or every tile of the "
                    "newest frame, dropping frames (all); the payload's scheduler.tile_choice")
    ap.add_argument("--payload-latency", type=float, default=None, metavar="S",
                    help="the payload's camera.latency_s (default: the scenario's camera.latency_s, the delay the "
                    "simulated camera has; 0 flies a payload that does not know it)")
    add_log_level_argument(ap)
    a = ap.parse_args(argv)
    setup_logging(a.log_level)
    if a.score_only:
        score = rescore(a.out, a.scenario)
        print(json.dumps({k: score.get(k) for k in SCORE_KEYS}, indent=2))
        print(treatment_line(score.get("treatment")))
        print(f"score: {a.out / 'score.json'}  map: {a.out / 'map.png'}")
        return 0
    if a.bundle is None:
        full = Path("build/bundle")
        a.bundle = full if (full / "model_card.json").is_file() else Path("build/quick_bundle")
    plan = MissionPlan(a.scenario, a.out, a.bundle, a.tlog, a.speed, log_level=a.log_level, start_s=a.start,
                       end_s=a.end, edgetpu_model=a.edgetpu_model, tpus=a.tpus, tpu_layout=a.tpu_layout,
                       model_cost=a.model_cost, tile_choice=a.tile_choice,
                       payload_latency_s=a.payload_latency)
    if is_indoor(a.scenario):
        from tools.mission.indoor import INDOOR_SCORE_KEYS, run_indoor_mission

        report = run_indoor_mission(plan)
        print(json.dumps({k: report[k] for k in (*INDOOR_SCORE_KEYS, "frames_processed", "backend")}, indent=2))
        print(f"report: {a.out / 'report.json'}  rack faces: {', '.join(report['face_pictures'])}")
        return 0
    report = run_mission(plan)
    summary = {k: report[k] for k in (*SCORE_KEYS, "frames_processed", "frames_dropped", "tiles_offered",
                                      "tiles_classified", "backend", "ground")}
    stamp = report.get("frame_stamp_error_ms")
    if stamp:
        summary["frame_stamp_error_ms"] = {k: stamp[k] for k in ("median", "p95", "matched")}
    if report.get("flat_assumption"):
        f = report["flat_assumption"]
        summary["flat_assumption"] = {k: f[k] for k in ("patches_found", "false_zones", "centroid_error_m_median",
                                                         "centroid_error_m_p95", "iou_mean")}
    print(json.dumps(summary, indent=2))
    print(treatment_line(report.get("treatment")))
    print(f"report: {a.out / 'report.json'}  map: {a.out / 'map.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
