"""Replay recorded missions through the disease map with another sensor model, and score them again.

`python -m tools.remap MISSIONS --bundle B [--hit-share H] [--miss-share M] [--cap C]`: for every
mission folder under MISSIONS (the output of `tools.missions` or `tools.mission`), the look records
of its detections.jsonl go through `payload export` with a sensor-model table recomputed from the
bundle card's validation counts at the given shares (compile/sensor.py), and the zones are scored
against the folder's scenario as the mission scores them. No flight, no model: seconds per mission,
so a change to the sensor model is judged on recorded flights before anyone flies it. The copies go
to --out (MISSIONS/remap by default); the recorded folders are not touched. Exits 1 when a patch is
lost or a false zone appears.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from compile.sensor import HIT_SHARE, LLR_CAP, MISS_SHARE, counts_matrix, llr_table
from payload.bundle import CLASSES
from payload.geo.diseasemap import MAPINFO_SCHEMA
from payload.sinks.export import export_layers
from tools.mission.run import rescore

log = logging.getLogger("tools.remap")


def remapped_info(line: str, table: dict[str, list[float]], explain_away: bool | None = None) -> str:
    """The map-info line of a recording with its sensor model's table (and the explain-away switch) replaced."""
    rec = json.loads(line)
    rec["sensor_model"]["llr"] = table
    rec["sensor_model"]["source"] = "remap"
    if explain_away is not None:
        rec["map"]["explain_away"] = explain_away
    return json.dumps(rec) + "\n"


def remap_folder(src: Path, dst: Path, table: dict[str, list[float]], explain_away: bool | None = None) -> None:
    """Copy src's detections.jsonl to dst with the new table, and rebuild dst's map and zones."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    with open(src / "detections.jsonl", encoding="utf-8") as f, open(dst / "detections.jsonl", "w",
                                                                       encoding="utf-8") as g:
        for line in f:
            g.write(remapped_info(line, table, explain_away) if f'"{MAPINFO_SCHEMA}"' in line else line)
    export_layers(dst, formats=("geojson",))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.remap", description=__doc__.split("\n\n")[0])
    ap.add_argument("missions", type=Path, help="a folder of mission folders (each with detections.jsonl, report.json)")
    ap.add_argument("--bundle", type=Path, required=True, help="the bundle the missions flew (its card's counts)")
    ap.add_argument("--hit-share", type=float, default=HIT_SHARE)
    ap.add_argument("--miss-share", type=float, default=MISS_SHARE)
    ap.add_argument("--cap", type=float, default=LLR_CAP)
    ap.add_argument("--explain-away", action=argparse.BooleanOptionalAction, default=None,
                    help="share a call's evidence by the cells' probabilities (map.explain_away); default: as recorded")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    card = json.loads((a.bundle / "model_card.json").read_text(encoding="utf-8"))
    block = card["sensor_model"]
    table = llr_table(counts_matrix(block, CLASSES), CLASSES, block["healthy"], block["diseases"],
                      a.hit_share, a.miss_share, a.cap)
    out_root = a.out or a.missions / "remap"
    folders = sorted(p for p in a.missions.iterdir()
                     if (p / "detections.jsonl").is_file() and (p / "report.json").is_file())
    if not folders:
        print(f"{a.missions}: no mission folders (detections.jsonl + report.json) in it", file=sys.stderr)
        return 2
    print(f"table {json.dumps(table)} (hit share {a.hit_share}, miss share {a.miss_share}, cap {a.cap}, "
          f"explain away {'as recorded' if a.explain_away is None else a.explain_away})")
    print("mission | found | false zones | mean IoU | centroid error median / p95 m")
    ok, ious = True, []
    for src in folders:
        scenario = Path(json.loads((src / "report.json").read_text(encoding="utf-8"))["scenario"])
        dst = out_root / src.name
        remap_folder(src, dst, table, a.explain_away)
        sc = rescore(dst, scenario)
        ious.append(sc["iou_mean"] or 0.0)
        ok = ok and sc["patches_found"] == sc["patches_total"] and sc["false_zones"] == 0
        med, p95 = (None if v is None else round(v, 2) for v in (sc["centroid_error_m_median"],
                                                                  sc["centroid_error_m_p95"]))
        print(f"{src.name} | {sc['patches_found']}/{sc['patches_total']} | {sc['false_zones']} | "
              f"{sc['iou_mean'] or 0:.2f} | {med} / {p95}")
    print(f"mean IoU over {len(folders)} missions: {statistics.mean(ious):.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
