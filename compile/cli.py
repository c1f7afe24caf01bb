"""`cropscout-build` / `python -m compile`: build, check and configure model bundles."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from payload.cliutil import run_cli
from payload.logsetup import add_log_level_argument, setup_logging

DEFAULT_CONFIG = Path("configs/build.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cropscout-build",
        description="Build the crop-disease model bundle: ResNet-50 (or, offline, a small CNN) -> full int8 "
                    "TFLite -> edgetpu_compiler.",
    )
    add_log_level_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("build", help="train, evaluate, quantize, compile and write a model bundle")
    p.add_argument("--config", help=f"build YAML file (default: {DEFAULT_CONFIG} if present, else built-in)")
    p.add_argument("--profile", default="default", help="default | quick | a profile defined in the file")
    p.add_argument("--out", default="build/bundle", help="bundle folder to write (default build/bundle)")
    p.add_argument("--cpu-only", action="store_true", help="do not run edgetpu_compiler; say so in the model card")
    p.add_argument("--compiler", help="edgetpu_compiler name or path (overrides edgetpu.compiler)")
    p.add_argument("--save-float", metavar="FILE", help="also save the float Keras model (.keras) outside the bundle")
    p.add_argument("--weights", metavar="imagenet|none|FILE",
                   help="backbone weights, overriding model.weights: imagenet (downloads once), none (random "
                        "init: offline demos and tests) or the path of a local ResNet50 notop .h5 file; the "
                        "quick profile's small CNN (model.backbone: small) takes none only")
    p.add_argument("--labels", nargs="+", metavar="DIR",
                   help="fine-tune on labelled flight tiles (`payload review`): flight folders or their labels/ "
                        "folders; whole folders are held back for the before/after figures (needs --init-from)")
    p.add_argument("--init-from", metavar="BUNDLE",
                   help="start from this bundle's float weights and model config (a bundle built by this version; "
                        "needs --labels)")

    p = sub.add_parser("check", help="Edge TPU pre-check of a .tflite model (no compiler needed)")
    p.add_argument("model", help="path of a .tflite file")
    p.add_argument("--min-runtime", type=int, default=14, help="Edge TPU runtime version to target (default 14)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--verbose", action="store_true", help="list every op")

    p = sub.add_parser("compile-bundle", help="run edgetpu_compiler on an existing bundle's int8 model")
    p.add_argument("bundle", help="bundle folder (written by `build`)")
    p.add_argument("--compiler", default="edgetpu_compiler", help="edgetpu_compiler name or path")
    p.add_argument("--min-runtime", type=int, default=14, help="Edge TPU runtime version to target (default 14)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before the compiler is stopped")
    p.add_argument("--num-segments", type=int, default=1,
                   help="compile into N segments, one per Edge TPU, run by the payload as a pipeline (default 1)")

    p = sub.add_parser("validate-config", help="check a build YAML file and print it resolved")
    p.add_argument("config", help="path of the build YAML file")
    p.add_argument("--profile", default="default", help="profile to apply before printing")
    return parser


def _build(args: argparse.Namespace) -> int:
    import logging

    from payload.configio import validate_config

    from .build import run_build
    from .config import deep_merge, load_build_config

    config = args.config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None)
    cfg = load_build_config(config, args.profile)
    over: dict = {}
    if args.compiler:
        over["edgetpu"] = {"compiler": args.compiler}
    if args.weights:
        over["model"] = {"weights": args.weights}
    if over:
        flags = " ".join(f"--{k} {v}" for k, v in (("weights", args.weights), ("compiler", args.compiler)) if v)
        cfg = validate_config(deep_merge(cfg.model_dump(), over), type(cfg),
                              f"{config or '<built-in defaults>'} (profile {args.profile}) with {flags}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run_build(cfg, Path(args.out), profile=args.profile, cpu_only=args.cpu_only,
                       save_float=Path(args.save_float) if args.save_float else None,
                       labels=[Path(d) for d in args.labels] if args.labels else None,
                       init_from=Path(args.init_from) if args.init_from else None)
    card = result.card
    m = card["metrics"]
    print(f"bundle: {result.bundle}")
    for warning in card.get("warnings", []):
        print(f"WARNING: {warning}")
    print(f"test accuracy: float {m['float']['accuracy']:.4f}, int8 {m['int8']['accuracy']:.4f}, "
          f"agreement {m['agreement']:.4f}")
    auc = m["int8"].get("roc_auc")
    if auc:
        print("int8 ROC AUC (one-vs-rest, test): " + ", ".join(f"{c} {v:.4f}" for c, v in auc.items()))
    t = card["training"]
    print(f"build time {t['build_seconds']:.0f} s (training {t['train_seconds']:.0f} s, activation cache: "
          f"{t.get('activation_cache') or 'off'}); backbone weights: {card.get('backbone_weights')}")
    print(f"thresholds: {json.dumps(card['thresholds'])}; int8 disease recall at thresholds "
          f"{m['int8']['at_thresholds']['disease_recall']:.4f}")
    lab = card.get("labels")
    if lab:
        print(f"fine-tuned from model {card['parent_model_sha256'][:12]}... on {lab['labels_per_class']} labels "
              f"({lab['mix']['achieved_share']:.0%} of training); split: {lab['split_rule']}")
        for side in ("before", "after"):
            f = lab[side]
            print(f"held-back labels ({f['images']}), {side}: accuracy {f['accuracy']:.3f}, recall "
                  + ", ".join(f"{c} {'-' if r is None else f'{r:.3f}'}" for c, r in f["recall"].items()))
    edgetpu = card["edgetpu"]
    if edgetpu["compiled"]:
        s = edgetpu["summary"]
        print(f"edge tpu: {s.get('ops_on_tpu')} ops on the TPU, {s.get('ops_on_cpu')} on the CPU")
    else:
        print(f"edge tpu: not compiled ({edgetpu['reason']})")
    if result.compiler_error is not None:
        logging.getLogger("compile").error("the int8 bundle is complete at %s, but:", result.bundle)
        raise result.compiler_error
    return 0


def _check(args: argparse.Namespace) -> int:
    from .tflite_check import check_model, format_report

    report = check_model(args.model, args.min_runtime)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(format_report(report, verbose=args.verbose))
    return 0 if report.ok else 1


def _compile_bundle(args: argparse.Namespace) -> int:
    from .build import attach_edgetpu

    card = attach_edgetpu(Path(args.bundle), args.compiler, args.min_runtime, args.timeout, args.num_segments)
    s = card["edgetpu"]["summary"]
    print(f"{args.bundle}: compiled with edgetpu_compiler {s.get('version')}: {s.get('ops_on_tpu')} ops on the "
          f"Edge TPU, {s.get('ops_on_cpu')} on the CPU"
          + (f", in {s['num_segments']} segments" if s.get("num_segments", 1) > 1 else ""))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .config import load_build_config

    cfg = load_build_config(args.config, args.profile)
    print(f"{args.config}: valid (profile {args.profile})")
    print(json.dumps(cfg.model_dump(mode="json", exclude={"profiles"}), indent=1))
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    commands = {"build": _build, "check": _check, "compile-bundle": _compile_bundle, "validate-config": _validate}
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
