"""`payload`: the program that runs on the drone's companion computer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from payload import __version__
from payload.backends.registry import BACKEND_NAMES
from payload.cliutil import run_cli
from payload.config import load_payload_config
from payload.logsetup import add_log_level_argument, setup_logging
from payload.plan.chip import EDGETPU_MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payload",
        description="Crop-disease scouting payload: classify camera frames on the Edge TPU (or CPU) "
        "and geotag every disease sighting.",
    )
    parser.add_argument("--version", action="version", version=f"payload {__version__}")
    add_log_level_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate-config", help="check a payload YAML file and print it resolved")
    p.add_argument("config", help="path of the payload YAML file")

    p = sub.add_parser("run", help="classify camera frames until the stream ends or SIGINT/SIGTERM")
    p.add_argument("--config", required=True, help="path of the payload YAML file")
    p.add_argument("--no-telemetry", action="store_true",
                   help="run with no flight controller link on purpose (telemetry.connection null): records are "
                   "flagged no_telemetry and nothing is geotagged; same as telemetry.allow_none: true")
    p.add_argument("--flight-dir", metavar="DIR",
                   help="write to exactly this folder instead of a new flight folder under output.dir (continues "
                   "it if its run did not finish; refuses a finished flight)")

    p = sub.add_parser("flights", help="list the flight folders under an output.dir root: start, duration, area "
                       "seen, zones, and whether each finished cleanly")
    p.add_argument("root", metavar="ROOT", help="the output.dir root of `payload run`")
    p.add_argument("--json", action="store_true", help="a JSON list instead of the table")

    p = sub.add_parser("classify", help="classify whole images and print class, confidence and all scores")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format OpenCV reads)")
    p.add_argument("--bundle", help="model bundle folder (default: model.bundle of --config)")
    p.add_argument("--config", help="payload YAML file to take bundle/backend/device/threads from")
    p.add_argument("--backend", choices=BACKEND_NAMES, help="override model.backend")
    p.add_argument("--device", help="Edge TPU device: usb, usb:N, pci, pci:N; several: usb:0,usb:1; all")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")

    sub.add_parser("devices", help="list the Coral Edge TPUs this machine can see, or say why none")

    p = sub.add_parser("export", help="rebuild the layers, zones, coverage, rasters and report.html from "
                       "OUT_DIR/detections.jsonl; several folders are fused into one map")
    p.add_argument("out_dir", metavar="OUT_DIR", nargs="+", help="output folder(s) of runs (output.dir)")
    p.add_argument("--out", help="where the fused map of several folders goes (default: the only folder)")
    p.add_argument("--config", help="payload YAML file to take sinks.formats and the prescription settings from")
    p.add_argument("--prescription", action="store_true",
                   help="also write the treatment zones, scout list and terminal files (prescription.zip, named "
                   "prescription_placeholder_rates.zip while rates are placeholders, zones.gpkg, TASKDATA/) with "
                   "the config's prescription section (docs/PRESCRIPTIONS.md)")

    p = sub.add_parser("compare", help="what changed between two flights of one field: zones new, grown, shrunk "
                       "and gone -> D/changes.json, D/changes.geojson, D/compare.html")
    p.add_argument("old", metavar="OLD", help="output folder of the earlier flight")
    p.add_argument("new", metavar="NEW", help="output folder of the later flight")
    p.add_argument("--out", required=True, metavar="D", help="folder for the change files")

    p = sub.add_parser("plan", help="a survey from what the product needs: altitude from the bundle's working "
                       "resolution, speed from overlap and the Edge TPU's throughput -> D/survey.plan "
                       "(QGroundControl), D/scenario.yaml (flight-sim), D/summary.json (docs/PLAN.md)")
    _plan_arguments(p)
    p = sub.add_parser("review", help="label the tiles a flight kept for review in a local web page (127.0.0.1): "
                       "answers go to FLIGHT_DIR/labels/ (labels.csv and class folders compile reads)")
    p.add_argument("flight", metavar="FLIGHT_DIR", help="output folder of a flight flown with review.enabled")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port; default 8765)")
    return parser


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    """`payload plan`'s options (docs/PLAN.md)."""
    p.add_argument("--field", required=True, help="the field: a GeoJSON polygon (lon, lat, WGS 84)")
    p.add_argument("--camera", required=True, help="camera YAML: preset or sensor_width_mm/sensor_height_mm/"
                   "focal_length_mm, width, height, max_fps, exposure_s")
    p.add_argument("--bundle", required=True, help="model bundle folder (its card's working_gsd_mm sets the altitude)")
    p.add_argument("--out", required=True, metavar="D", help="folder for survey.plan, scenario.yaml, summary.json")
    p.add_argument("--tpus", type=int, default=1, help="Edge TPUs, the same model on each (default %(default)s)")
    p.add_argument("--edgetpu-model", choices=EDGETPU_MODELS, default="usb3",
                   help="the Edge TPU's attachment, for its published pace (default %(default)s)")
    p.add_argument("--gsd-mm", type=float, default=None,
                   help="mm per model-input pixel to plan at INSTEAD of the card's working_gsd_mm (said in the "
                   "summary)")
    p.add_argument("--stage", choices=("early", "moderate", "late"), default=None,
                   help="the disease stage to find: later stages are seen from higher up (default: the earliest stage "
                   "the card says the bundle sees)")
    p.add_argument("--model-cost", choices=("bundle", "resnet50"), default="bundle",
                   help="the chip's work per tile: the bundle's model counted, or a full ResNet-50 V1 at its input "
                   "size (the product's model); a card's edgetpu.latency_ms wins over both (default %(default)s)")
    p.add_argument("--front-overlap", type=float, default=0.75, help="along-track overlap of frames (default 0.75)")
    p.add_argument("--side-overlap", type=float, default=0.3, help="overlap of neighbouring lines (default 0.3)")
    p.add_argument("--max-blur-px", type=float, default=0.5, help="motion blur bound, frame pixels (default 0.5)")
    p.add_argument("--max-speed", type=float, default=12.0, help="the vehicle's top survey speed, m/s (default 12)")
    p.add_argument("--max-altitude", type=float, default=120.0, help="altitude ceiling above the crop, m (default 120)")
    p.add_argument("--home-alt", type=float, default=0.0, help="the field's ground altitude AMSL, m (default 0)")
    p.add_argument("--crop", choices=("wheat", "soybean", "cucurbit", "grapevine"), default="wheat",
                   help="the crop the simulator scenario grows (default %(default)s)")


def _plan(args: argparse.Namespace) -> int:
    from payload.plan.command import PlanArgs, make_plan, summary_text
    from payload.plan.planner import PlanLimits

    limits = PlanLimits(front_overlap=args.front_overlap, side_overlap=args.side_overlap, max_blur_px=args.max_blur_px,
                        max_speed_mps=args.max_speed, max_altitude_m=args.max_altitude)
    summary = make_plan(PlanArgs(args.field, args.camera, args.bundle, args.out, args.tpus, args.edgetpu_model,
                                 args.gsd_mm, args.model_cost, limits, args.home_alt, args.crop, args.stage))
    print(summary_text(summary))
    return 0


def _classify(args: argparse.Namespace) -> int:
    import json

    import cv2

    from payload.backends import open_classifier
    from payload.bundle import load_bundle
    from payload.capture.sources import UnreadableFrameError, to_rgb
    from payload.errors import CameraError, UserError
    from payload.pipeline.tiling import resize_whole

    cfg = load_payload_config(args.config) if args.config else None
    bundle_path = args.bundle or (cfg.model.bundle if cfg else None)
    if bundle_path is None:
        raise UserError("no model bundle given; pass --bundle DIR or --config FILE")
    backend = args.backend or (cfg.model.backend if cfg else "auto")
    device = args.device or (cfg.model.device if cfg else None)
    threads = args.threads or (cfg.model.num_threads if cfg else 2)
    bundle = load_bundle(bundle_path)
    clf = open_classifier(bundle, backend, device, threads)
    failed = []
    try:
        for path in args.images:
            img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            try:
                rgb = to_rgb(img, "bgr")
            except UnreadableFrameError as err:
                print(f"{path}: cannot read the image ({err})", file=sys.stderr)
                failed.append(path)
                continue
            scores = clf.classify_batch(resize_whole(rgb, (bundle.input_height, bundle.input_width)))
            d = bundle.decide(scores)[0]
            all_scores = {name: round(float(s), 4) for name, s in zip(bundle.labels, scores[0], strict=True)}
            if args.json:
                print(json.dumps({"image": path, "label": d.label, "confidence": round(d.confidence, 4),
                                  "flagged": d.flagged, "scores": all_scores, "backend": clf.name}))
            else:
                listed = "  ".join(f"{k} {v:.3f}" for k, v in all_scores.items())
                flag = "  DISEASE" if d.flagged else ""
                print(f"{path}: {d.label} {d.confidence:.3f}{flag}  |  {listed}")
    finally:
        clf.close()
    if failed:
        raise CameraError(f"{len(failed)} of {len(args.images)} image(s) could not be read: {', '.join(failed)}; "
                          "check that they are image files")
    return 0


def _devices() -> int:
    from payload.backends.devices import device_strings, list_edge_tpus, runtime_library_status

    found, how = list_edge_tpus()
    status = runtime_library_status()
    if found:
        # the first column is what model.device takes (`all` = every line)
        for name, dev in zip(device_strings(found), found, strict=True):
            print(f"{name}\t{dev.type}\t{dev.path}\t{dev.detail}")
        print(f"({how}; {status})")
    else:
        print(f"no Edge TPU found ({how}); {status}. The payload will run on the CPU with model.backend: auto.")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "validate-config":
        cfg = load_payload_config(args.config)
        print(cfg.model_dump_json(indent=2))
        return 0
    if args.command == "run":
        from payload.pipeline.runner import run_payload

        cfg = load_payload_config(args.config)
        if args.no_telemetry:  # the operator's "on purpose", as telemetry.allow_none would say it
            cfg = cfg.model_copy(update={"telemetry": cfg.telemetry.model_copy(update={"allow_none": True})})
        run_payload(cfg, flight_dir=args.flight_dir)
        return 0
    if args.command == "flights":
        from payload.ops.flights import flights_from_cli

        return flights_from_cli(args.root, args.json)
    if args.command == "classify":
        return _classify(args)
    if args.command == "devices":
        return _devices()
    if args.command == "export":
        from payload.sinks.export import export_from_cli

        export_cfg = load_payload_config(args.config) if args.config else None
        code = export_from_cli(args.out_dir, export_cfg, args.out, args.prescription)
        return code or _export_report(args)
    if args.command == "compare":
        from payload.report.compare import compare_from_cli

        return compare_from_cli(args.old, args.new, args.out)
    if args.command == "plan":
        return _plan(args)
    if args.command == "review":
        from payload.report.review import review_from_cli

        return review_from_cli(args.flight, args.port)
    raise AssertionError(f"unhandled command {args.command}")


def _export_report(args: argparse.Namespace) -> int:
    """report.html of the exported folder, from the files the export just rebuilt (the flight's mosaic and crops
    are reused: the frames are not kept)."""
    from pathlib import Path

    from payload.config import ReportSection
    from payload.report.html import write_report

    cfg = load_payload_config(args.config).report if args.config else ReportSection()
    if cfg.enabled:
        print(f"  wrote {write_report(Path(args.out) if args.out else Path(args.out_dir[0]), cfg)}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
