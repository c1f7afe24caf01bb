"""`python -m tools.teach`: the review-and-retrain loop measured end to end in simulation (issue 26, item 4).

    python -m tools.teach --scenario S --bundle B --labels N --out D [--second-seed K]

1. **Fly** S with the real payload (`tools.mission`; its review sink is on in every mission) into D/first/.
2. **Review** with the simulator's truth standing in for the agronomist: the review page's tiles in
   exactly the order the page offers them (`ReviewApp.page_order`: most informative first), the first N
   answered through the page's own writer (`ReviewApp.label`: D/first/labels/labels.csv and the class
   folders, as `payload review` leaves them). A tile's answer is its true class on the label frame
   rendered at the frame's true pose (`FlightTruth`: the camera's frame log, frame_times.json, gives
   each payload frame's timeline time), by tools/tile_eval.py's rule: the disease covering most of the
   tile when that is at least MUST_FLAG_SHARE (25 %) of it, else healthy (headland soil too, as in
   compile's training data); `unsure` when the tile is mixed: some disease, but under 25 %, or two
   diseases each at least 25 % (`review_answer`). An agronomist is not sure of such tiles either, and
   `compile` ignores `unsure`.
3. **Retrain**: `python -m compile build --profile <the parent card's profile> --labels D/first
   --init-from B --out D/bundle` (`--cpu-only` when the parent was not compiled for the Edge TPU).
4. **Fly a second field** twice, with B (before) and with D/bundle (after): S's crop, camera, flight,
   field size and terrain, with the patches, light and world seed `flight-sim random-scenario --seed K`
   draws (`second_field`); K is drawn at run time and printed unless --second-seed gives it.

D/summary.json holds `before` and `after`, both on the second field: `tile_recall_<disease>` and
`false_alarm_rate` over every tile of every trusted look the payload wrote (truth as in step 2, the
call as tools.tile_eval counts it: the label when flagged, else healthy; `flight_tile_figures`), and
report.json's patches found, false zones and median centroid error; plus the seeds, N, the answers per
class, and the parent's and the child's model hashes. docs/TRAINING_DATA.md, "The loop, measured in
simulation".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flight_sim.indoor import is_indoor
from flight_sim.scenario import Scenario, load_scenario, random_scenario, scenario_from_dict, scenario_to_yaml
from payload.bundle import CLASSES, CPU_MODEL, FLOAT_WEIGHTS, read_card, sha256_file
from payload.cliutil import run_cli
from payload.errors import UserError
from payload.logsetup import add_log_level_argument, setup_logging
from payload.pipeline.tiling import grid
from payload.report.review import UNSURE, ReviewApp
from payload.types import TileBox
from tools.mission.frametime import matchable_indices, read_looks, read_truth
from tools.tile_eval import MUST_FLAG_SHARE, confusion_figures, tile_class, tile_shares

log = logging.getLogger("teach")

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = "summary.json"
ANSWERS = "answers.json"

# a tile's label frame by the payload's frame seq, or None when the camera's log cannot say which frame it was
LabelFrame = Callable[[int], np.ndarray | None]


class TeachError(UserError):
    """The loop cannot run: a bundle that cannot be fine-tuned, a flight without its truth, a failed build."""


def progress(step: str, text: str) -> None:
    print(f"teach [{step}] {text}", flush=True)


# ---------------------------------------------------------------- the simulator's truth for a flown mission


class FlightTruth:
    """The true label frame of each frame a mission's payload classified (its `frame.seq`).

    The mission keeps the camera's log beside the flight (frame_times.json: every frame's timeline time
    and the frames sent on each connection, in order); `matchable_indices` says which camera frame the
    payload's k-th frame was. The label frame is the world's class per pixel at the timeline's true pose
    then, as tools/tile_eval.py renders it (only the projection, no shading).
    """

    def __init__(self, scenario: Scenario, flight: Path) -> None:
        from flight_sim.render import WorldRenderer
        from flight_sim.survey import survey_timeline

        truth = read_truth(flight)
        if truth is None:
            raise TeachError(f"{flight} has no frame_times.json (the camera's log a mission writes): fly it with "
                             "tools.mission")
        frames = {int(f["index"]): float(f["sim_t"]) for f in truth["frames"]}
        self.sim_t = {seq: frames[i] for seq, i in enumerate(matchable_indices(truth["connections"])) if i in frames}
        self.timeline = survey_timeline(scenario)
        self.renderer = WorldRenderer.for_scenario(scenario, effects=False)
        self._last: tuple[int, np.ndarray | None] | None = None

    def __call__(self, seq: int) -> np.ndarray | None:
        if self._last is not None and self._last[0] == seq:
            return self._last[1]
        t = self.sim_t.get(int(seq))
        labels = None if t is None else self.renderer.render_labels(self.timeline.pose_at(t))
        self._last = (int(seq), labels)
        return labels


def review_answer(share: np.ndarray, classes: Sequence[str] = CLASSES) -> str:
    """What the simulator's truth answers for a tile of these shares (tile_shares' row: classes, then outside).

    tile_eval's rule (`tile_class`) where it is clear; a tile mostly outside the field (headland soil)
    with no disease is healthy, as bare soil is in compile's training data. `unsure` where a person
    would hesitate: some disease, but under MUST_FLAG_SHARE of the tile (or beside the field's edge),
    or two diseases each covering at least that much.
    """
    cls = tile_class(share, classes)
    diseases = np.asarray(share[1 : len(classes)], dtype=float)
    if cls in ("outside", "healthy"):
        return UNSURE if diseases.max(initial=0.0) > 0 else "healthy"
    return UNSURE if int(np.sum(diseases >= MUST_FLAG_SHARE)) > 1 else cls


def tile_box(rec: Mapping[str, Any]) -> TileBox:
    """A review record's tile in its frame's pixels."""
    t = rec["tile"]
    return TileBox(int(t["x"]), int(t["y"]), int(t["w"]), int(t["h"]), int(t.get("row", 0)), int(t.get("col", 0)))


def answer_first(flight: Path, n: int, label_frame: LabelFrame) -> list[dict[str, Any]]:
    """Answer the first `n` tiles the review page would show, in its order, through the page's own writer.

    Returns one entry per answer: its place in the page's order, the tile, the model's call and the truth's
    shares. A tile whose frame the camera's log cannot name is answered `unsure` (no truth to give).
    """
    app = ReviewApp(flight)
    answers = []
    for rank, rec in enumerate(app.page_order()[: max(0, n)]):
        labels = label_frame(int((rec.get("frame") or {}).get("seq", -1)))
        share = None if labels is None else tile_shares(labels, [tile_box(rec)], len(CLASSES))[0]
        answer = UNSURE if share is None else review_answer(share)
        if answer not in app.labels:
            raise TeachError(f"the review offers {app.labels}, not the truth's {answer!r}: the bundle's classes are "
                             f"not the simulator's {list(CLASSES)}")
        app.label(str(rec["id"]), answer)
        answers.append({
            "rank": rank, "id": rec["id"], "kind": rec.get("kind"), "informativeness": rec.get("informativeness"),
            "model_label": rec.get("label"), "flagged": rec.get("flagged"), "answer": answer,
            "truth_shares": None if share is None else
            {c: round(float(v), 4) for c, v in zip([*CLASSES, "outside"], share, strict=True)},
        })
    return answers


def answer_counts(answers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Answers per label, every class and unsure listed (0 when none)."""
    c = Counter(str(a["answer"]) for a in answers)
    return {k: int(c[k]) for k in (*CLASSES, UNSURE)}


# ---------------------------------------------------------------- figures on the second field


def flight_tile_figures(flight: Path, label_frame: LabelFrame, rows: int, cols: int,
                        overlap: float = 0.0) -> dict[str, Any]:
    """Tile recall per disease and the false-alarm rate over every tile of every trusted look in `flight`.

    The truth of each tile is tools.tile_eval's (`tile_class` on the label frame at the frame's true pose),
    the call the payload's own (its label when flagged, else healthy), counted by `confusion_figures`.
    Untrusted looks (take-off, landing, a pose the map did not use) and frames the camera's log cannot name
    are counted, not scored.
    """
    confusion: Counter[tuple[str, str]] = Counter()
    looks = untrusted = unnamed = 0
    classes = list(CLASSES)
    for look in read_looks(flight):
        if not look.get("trusted"):
            untrusted += 1
            continue
        frame = look.get("frame") or {}
        labels = label_frame(int(frame.get("seq", -1)))
        if labels is None:
            unnamed += 1
            continue
        h, w = labels.shape
        boxes = {(b.row, b.col): b for b in grid(int(frame.get("width") or w), int(frame.get("height") or h),
                                                 rows, cols, overlap)}
        tiles = look.get("tiles") or []
        shares = tile_shares(labels, [boxes[(int(t["row"]), int(t["col"]))] for t in tiles], len(classes))
        for t, share in zip(tiles, shares, strict=True):
            confusion[(tile_class(share, classes), t["label"] if t["flagged"] else "healthy")] += 1
        looks += 1
    out = confusion_figures(confusion, classes[1:])
    out.update(looks_scored=looks, looks_untrusted=untrusted, looks_without_truth=unnamed,
               tiles_scored=int(sum(confusion.values())))
    return out


def side_figures(report: Mapping[str, Any], tiles: Mapping[str, Any], diseases: Sequence[str]) -> dict[str, Any]:
    """One side (before or after) of the summary: tile figures and the mission's zone figures."""
    recalls = {d: tiles.get(f"recall_{d}") for d in diseases}
    known = [r for r in recalls.values() if r is not None]
    return {
        **{f"tile_recall_{d}": r for d, r in recalls.items()},
        "tile_recall_worst": min(known) if known else None,
        "false_alarm_rate": tiles.get("false_alarm_rate"),
        "patches_found": report.get("patches_found"),
        "patches_total": report.get("patches_total"),
        "false_zones": report.get("false_zones"),
        "centroid_error_m_median": report.get("centroid_error_m_median"),
        "tiles_scored": tiles.get("tiles_scored"),
        "looks_scored": tiles.get("looks_scored"),
        "confusion": tiles.get("confusion"),
    }


TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("false_alarm_rate", "false-alarm rate (tiles)"),
    ("patches_found", "patches found"),
    ("false_zones", "false zones"),
    ("centroid_error_m_median", "median centroid error (m)"),
)


def _cell(key: str, side: Mapping[str, Any]) -> str:
    v = side.get(key)
    if v is None:
        return "-"
    if key == "patches_found":
        return f"{v}/{side.get('patches_total', '?')}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def summary_table(summary: Mapping[str, Any]) -> str:
    """The before/after figures as a short text table."""
    before, after = summary["before"], summary["after"]
    keys = [(k, f"tile recall {k[len('tile_recall_'):].replace('_', ' ')}") for k in before
            if k.startswith("tile_recall_") and k != "tile_recall_worst"]
    lines = [f"{'second field (seed ' + str(summary['second_seed']) + ')':<34}{'before':>10}{'after':>10}"]
    for key, name in [*keys, *TABLE_ROWS]:
        lines.append(f"{name:<34}{_cell(key, before):>10}{_cell(key, after):>10}")
    per = ", ".join(f"{k} {v}" for k, v in summary["labels_per_class"].items())
    lines.append(f"labels: {summary['labels_answered']} of the page's first {summary['labels_asked']} ({per})")
    return "\n".join(lines)


# ---------------------------------------------------------------- the second field, the bundles, the build


def second_field(s: Scenario, seed: int) -> Scenario:
    """Another field of S's crop and camera: S's crop, camera, flight, field size, origin and terrain, with the
    patches, light and world seed `flight-sim random-scenario --seed SEED` draws for a field of that size."""
    drawn = random_scenario(seed, origin=(s.origin.lat, s.origin.lon, s.origin.alt), width_m=s.field.width_m,
                            height_m=s.field.height_m)
    data = s.model_dump(mode="json", by_alias=True)
    data.update(patches=[p.model_dump(mode="json", by_alias=True) for p in drawn.patches],
                light=drawn.light.model_dump(mode="json"), seed=seed)
    return scenario_from_dict(data, f"<second field of {s.crop.kind}, seed {seed}>")


def model_sha256(bundle: Path) -> str:
    """The hash the payload stamps on its records (the int8 model's)."""
    return sha256_file(bundle / CPU_MODEL)


def check_parent(bundle: Path) -> dict[str, Any]:
    """The parent's card as a dict, or a TeachError before anything is flown when it cannot be fine-tuned."""
    try:
        card = read_card(bundle)
    except UserError as err:
        raise TeachError(f"--bundle {bundle}: {err}") from err
    if FLOAT_WEIGHTS not in card.files or not (bundle / FLOAT_WEIGHTS).is_file():
        raise TeachError(f"--bundle {bundle} has no {FLOAT_WEIGHTS} (its float weights), so `compile build "
                         "--init-from` cannot fine-tune it: rebuild it with this version, e.g. `python -m compile "
                         f"build --profile {card.profile or 'quick'} --weights none --cpu-only --out DIR`")
    return card.model_dump(mode="json")


def retrain_command(parent: Path, parent_card: Mapping[str, Any], labels: Sequence[Path], out: Path,
                    config: Path | None = None, log_level: str = "INFO") -> list[str]:
    """`python -m compile build` fine-tuning the parent on the labelled folders with the parent's profile."""
    cmd = [sys.executable, "-m", "compile", "--log-level", log_level, "build",
           "--profile", str(parent_card.get("profile") or "default"),
           "--labels", *(str(p.resolve()) for p in labels), "--init-from", str(parent.resolve()),
           "--out", str(out.resolve())]
    if config is not None:
        cmd += ["--config", str(config.resolve())]
    if not (parent_card.get("edgetpu") or {}).get("compiled"):
        cmd.append("--cpu-only")  # as the parent: no edgetpu_compiler run
    return cmd


def subprocess_env() -> dict[str, str]:
    """This checkout first on the path of every child (the payload, the build): they run this code."""
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in parts:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *parts])
    return env


def retrain(cmd: Sequence[str], out: Path, log_path: Path) -> None:
    """Run the build, its output in log_path; a TeachError naming the log when it fails."""
    with log_path.open("w", encoding="utf-8") as fh:
        done = subprocess.run(list(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=subprocess_env(),  # noqa: S603
                              check=False)
    if done.returncode != 0 or not (out / "model_card.json").is_file():
        raise TeachError(f"the fine-tune failed (exit {done.returncode}); see {log_path}")


# ---------------------------------------------------------------- the loop


Fly = Callable[..., dict[str, Any]]


def fly_mission(scenario: Path, out: Path, bundle: Path, log_level: str, start_s: float | None,
                end_s: float | None) -> dict[str, Any]:
    """One real mission (simulator + `payload run`); returns its report.json."""
    from tools.mission.run import MissionPlan, run_mission

    return run_mission(MissionPlan(scenario, out, bundle, log_level=log_level, start_s=start_s, end_s=end_s))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.teach", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "configs" / "scenarios" / "default.yaml",
                    help="the first field (default: configs/scenarios/default.yaml)")
    ap.add_argument("--bundle", type=Path, required=True,
                    help="the parent bundle: flown first and before, fine-tuned (must carry its float weights)")
    ap.add_argument("--labels", type=int, required=True, metavar="N",
                    help="answer the first N tiles the review page would show")
    ap.add_argument("--out", type=Path, required=True, help="folder for first/, bundle/, second_*/ and summary.json")
    ap.add_argument("--second-seed", type=int, default=None, metavar="K",
                    help="the second field's seed (default: drawn at run time and printed)")
    ap.add_argument("--config", type=Path, default=None,
                    help="build YAML for the fine-tune (default: compile's own, configs/build.yaml)")
    ap.add_argument("--start", type=float, default=None, help="fly every flight only from this flight second")
    ap.add_argument("--end", type=float, default=None, help="fly every flight only up to this flight second")
    add_log_level_argument(ap)
    return ap


def run(argv: Sequence[str] | None, fly: Fly = fly_mission) -> int:
    a = build_parser().parse_args(argv)
    setup_logging(a.log_level)
    if a.labels < 1:
        raise TeachError(f"--labels must be 1 or more, got {a.labels}")
    os.environ["PYTHONPATH"] = subprocess_env()["PYTHONPATH"]  # the payload's process runs this checkout too
    t0 = time.monotonic()
    parent: Path = a.bundle
    card = check_parent(parent)
    if is_indoor(a.scenario):
        raise TeachError(f"{a.scenario} is an indoor scenario: tools.teach flies outdoor fields (a second field is "
                         "drawn as `flight-sim random-scenario` draws one)")
    s1 = load_scenario(a.scenario)
    if a.second_seed is None:
        from tools.missions import draw_seeds

        seed2 = next(k for k in draw_seeds(4) if k != s1.seed)
        progress("0/4", f"second field's seed drawn at run time: {seed2} (pass --second-seed {seed2} to repeat)")
    else:
        seed2 = a.second_seed
    out: Path = a.out.resolve()  # the payload runs from the checkout: its config's path must not be relative
    out.mkdir(parents=True, exist_ok=True)
    s2 = second_field(s1, seed2)
    s2_path = out / f"second_field_{seed2}.yaml"
    s2_path.write_text(scenario_to_yaml(s2), encoding="utf-8")
    walls: dict[str, float] = {}

    first = out / "first"
    progress("1/4", f"flying {a.scenario} (seed {s1.seed}) with {parent} into {first}")
    t = time.monotonic()
    report1 = fly(a.scenario, first, parent, a.log_level, a.start, a.end)
    walls["fly_first"] = time.monotonic() - t
    progress("1/4", f"first field: {report1.get('patches_found')}/{report1.get('patches_total')} patches found, "
             f"{report1.get('false_zones')} false zones")

    progress("2/4", f"reviewing {first} with the simulator's truth: the page's first {a.labels} tiles")
    t = time.monotonic()
    answers = answer_first(first, a.labels, FlightTruth(s1, first))
    (out / ANSWERS).write_text(json.dumps(answers, indent=1) + "\n", encoding="utf-8")
    counts = answer_counts(answers)
    walls["review"] = time.monotonic() - t
    progress("2/4", f"{len(answers)} answers written to {first / 'labels'}: "
             + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if len(answers) < a.labels:
        log.warning("the flight kept only %d review tiles: %d answered, not %d", len(answers), len(answers), a.labels)
    if not any(counts[c] for c in CLASSES):
        raise TeachError(f"none of the page's first {a.labels} tiles has a class answer (all unsure): nothing to "
                         f"fine-tune on; ask for more labels (the flight kept {len(ReviewApp(first).tiles)} tiles)")

    child = out / "bundle"
    cmd = retrain_command(parent, card, [first], child, a.config, a.log_level)
    progress("3/4", f"fine-tuning: {shlex.join(cmd)}  (log {out / 'retrain.log'})")
    t = time.monotonic()
    retrain(cmd, child, out / "retrain.log")
    walls["retrain"] = time.monotonic() - t
    child_card = json.loads((child / "model_card.json").read_text(encoding="utf-8"))

    sides: dict[str, dict[str, Any]] = {}
    diseases = list(card.get("disease_classes") or CLASSES[1:])
    for side, bundle in (("before", parent), ("after", child)):
        folder = out / f"second_{side}"
        progress("4/4", f"flying the second field (seed {seed2}, {s2.crop.kind}) {side} the labels: {bundle}")
        t = time.monotonic()
        report = fly(s2_path, folder, bundle, a.log_level, a.start, a.end)
        tiles = flight_tile_figures(folder, FlightTruth(s2, folder), s2.camera.tile_rows, s2.camera.tile_cols,
                                    s2.camera.tile_overlap)
        sides[side] = side_figures(report, tiles, diseases)
        walls[f"fly_second_{side}"] = time.monotonic() - t
        f = sides[side]
        progress("4/4", f"{side}: " + ", ".join(f"tile recall {d} {_cell(f'tile_recall_{d}', f)}" for d in diseases)
                 + f", false alarms {_cell('false_alarm_rate', f)}, {_cell('patches_found', f)} patches found, "
                 f"{f['false_zones']} false zones")

    summary = {
        "what": "tools.teach: fly, review the page's first N tiles with the simulator's truth, fine-tune, fly a "
                "second field of the same crop and camera before and after (docs/TRAINING_DATA.md)",
        "command": "python -m tools.teach " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "scenario": str(a.scenario),
        "first_seed": s1.seed,
        "second_seed": seed2,
        "second_seed_drawn": a.second_seed is None,
        "second_scenario": str(s2_path),
        "crop": s2.crop.kind,
        "window_s": {"start": a.start, "end": a.end},
        "labels_asked": a.labels,
        "labels_answered": len(answers),
        "labels_per_class": counts,
        "parent_bundle": str(parent),
        "parent_profile": card.get("profile"),
        "parent_model_sha256": model_sha256(parent),
        "child_bundle": str(child),
        "child_model_sha256": model_sha256(child),
        "child_parent_model_sha256": child_card.get("parent_model_sha256"),
        "child_labels_before_after": {k: (child_card.get("labels") or {}).get(k) for k in ("before", "after")},
        "before": sides["before"],
        "after": sides["after"],
        "wall_s": {k: round(v, 1) for k, v in {**walls, "total": time.monotonic() - t0}.items()},
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(summary_table(summary))
    print(f"summary: {out / SUMMARY}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(lambda args: run(args), argv))


if __name__ == "__main__":
    main()
