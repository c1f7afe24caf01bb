"""`payload review FLIGHT_DIR`: a local page where a person labels the tiles the review sink kept.

The flight kept a bounded sample of tiles worth a look (payload/sinks/review.py: near the decision,
on zone edges, flagged, a random share of healthy). This serves them on 127.0.0.1 only (no internet,
no account: the page is one inline HTML file with vanilla JavaScript), most informative first, each
with the tile, its place on a small map of the flight (the track, the zones, the kept tiles) and the
model's call and scores. One key or click labels a tile; the page moves on by itself; undo removes
the answer.

Every answer is on disk before the page moves on (the POST returns after the fsync), in two forms
that say the same: `FLIGHT_DIR/labels/labels.csv` (one row per labelled tile: id, label, time, the
model's call, the bundle's hash) and a copy of the tile in `FLIGHT_DIR/labels/<class>/<tile>.jpg`, a
PlantVillage-style folder whose class folders carry the model's class names, so compile's folder
source (compile/data.py `scan_folder`) reads it with no class map (`unsure/` is not a class and is
left out there). The CSV is the truth: at start a row whose copy is missing is copied again and a copy
with no row is removed, so a server killed between the two writes comes back consistent. Closing the
browser loses nothing; restarting the server shows the saved labels and opens at the first
unlabelled tile.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from payload.errors import UserError
from payload.files.atomic import atomic_write_text
from payload.files.jsonl import iter_jsonl
from payload.geo.looks import LOOK_SCHEMA
from payload.sinks.review import REVIEW_DIR, read_review, write_bytes_durably

log = logging.getLogger(__name__)

LABELS_DIR = "labels"
LABELS_CSV = "labels.csv"
UNSURE = "unsure"
CSV_FIELDS = ("tile_id", "label", "labelled_utc", "model_label", "model_sha256", "kind")
DEFAULT_PORT = 8765
MAP_W, MAP_H, MAP_PAD = 360, 270, 8
MAX_TRACK_POINTS = 2000


def fsync_dir(path: Path) -> None:
    """A rename or unlink is durable only once its folder is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def label_keys(labels: Sequence[str]) -> dict[str, str]:
    """One letter per label (its first letter not taken yet; powdery_mildew is `m`, not `p`, after the
    word a grower says), plus its number 1..n."""
    keys: dict[str, str] = {}
    for i, name in enumerate(labels):
        words = [w for w in name.lower().split("_") if w]
        prefer = [w[0] for w in reversed(words)] if len(words) > 1 else []
        for ch in [*prefer, *name.lower()]:
            if ch.isalpha() and ch not in keys and ch not in "z":  # z is undo
                keys[ch] = name
                break
        keys[str(i + 1)] = name
    return keys


class LabelBook:
    """The answers: labels.csv and the class folders, kept saying the same thing."""

    def __init__(self, flight: Path, tiles: Mapping[str, Mapping[str, Any]], labels: Sequence[str]) -> None:
        self.root = flight / LABELS_DIR
        self.tiles_dir = flight / REVIEW_DIR
        self.tiles = tiles
        self.labels = list(labels)
        self.rows: dict[str, dict[str, str]] = {}
        self._load()

    def _load(self) -> None:
        path = self.root / LABELS_CSV
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("tile_id") in self.tiles and row.get("label") in self.labels:
                        self.rows[row["tile_id"]] = {k: row.get(k) or "" for k in CSV_FIELDS}
        for tile_id, row in self.rows.items():  # the CSV is the truth: a missing copy is made again
            if not self._copy_path(tile_id, row["label"]).is_file():
                self._copy(tile_id, row["label"])
        for label in self.labels:  # ... and a copy with no row (or another label) goes
            for p in (self.root / label).glob("*.jpg") if (self.root / label).is_dir() else ():
                if p.stem in self.tiles and self.rows.get(p.stem, {}).get("label") != label:
                    p.unlink()

    def _copy_path(self, tile_id: str, label: str) -> Path:
        return self.root / label / f"{tile_id}.jpg"

    def _copy(self, tile_id: str, label: str) -> None:
        src = self.tiles_dir / str(self.tiles[tile_id]["image"])
        dst = self._copy_path(tile_id, label)
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_durably(dst, src.read_bytes())
        fsync_dir(dst.parent)

    def _remove_copy(self, tile_id: str, label: str) -> None:
        p = self._copy_path(tile_id, label)
        if p.exists():
            p.unlink()
            fsync_dir(p.parent)

    def _write_csv(self) -> None:
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in self.rows.values():
            w.writerow(row)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / LABELS_CSV, out.getvalue())  # fsync'd, then renamed
        fsync_dir(self.root)

    def set(self, tile_id: str, label: str) -> dict[str, str]:
        """Label a tile (again): the copy first, then the row, so the CSV never names a missing copy."""
        old = self.rows.get(tile_id)
        self._copy(tile_id, label)
        rec = self.tiles[tile_id]
        self.rows[tile_id] = {"tile_id": tile_id, "label": label,
                              "labelled_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                              "model_label": str(rec.get("label", "")),
                              "model_sha256": str(rec.get("model_sha256") or ""),
                              "kind": str(rec.get("kind", ""))}
        self._write_csv()
        if old is not None and old["label"] != label:
            self._remove_copy(tile_id, old["label"])
        return self.rows[tile_id]

    def remove(self, tile_id: str) -> None:
        """Undo: the row first, then the copy (the CSV is the truth if the copy outlives a crash)."""
        old = self.rows.pop(tile_id, None)
        if old is None:
            return
        self._write_csv()
        self._remove_copy(tile_id, old["label"])


def _rings(geom: Mapping[str, Any] | None) -> list[list[list[float]]]:
    """The outer rings ([lon, lat] points) of a GeoJSON Polygon or MultiPolygon."""
    if not geom:
        return []
    if geom.get("type") == "Polygon":
        return [geom["coordinates"][0]]
    if geom.get("type") == "MultiPolygon":
        return [p[0] for p in geom["coordinates"]]
    return []


class MapFrame:
    """lon/lat -> the small map's SVG pixels (equirectangular about the flight's centre: a field is flat)."""

    def __init__(self, points: Iterable[tuple[float, float]]) -> None:
        pts = [(lon, lat) for lon, lat in points if math.isfinite(lon) and math.isfinite(lat)]
        if not pts:
            pts = [(0.0, 0.0)]
        lons, lats = [p[0] for p in pts], [p[1] for p in pts]
        self.lon0, self.lat1 = min(lons), max(lats)
        self.kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
        w = max((max(lons) - self.lon0) * self.kx, 1e-9)
        h = max(self.lat1 - min(lats), 1e-9)
        self.scale = min((MAP_W - 2 * MAP_PAD) / w, (MAP_H - 2 * MAP_PAD) / h)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (round(MAP_PAD + (lon - self.lon0) * self.kx * self.scale, 1),
                round(MAP_PAD + (self.lat1 - lat) * self.scale, 1))

    def points(self, lonlat: Iterable[Sequence[float]]) -> str:
        return " ".join(f"{x},{y}" for x, y in (self.xy(float(p[0]), float(p[1])) for p in lonlat))


def flight_track(flight: Path) -> list[tuple[float, float]]:
    """The vehicle's (lon, lat) at each trusted look, thinned to at most MAX_TRACK_POINTS."""
    path = flight / "detections.jsonl"
    if not path.is_file():
        return []
    track = []
    for rec in iter_jsonl(path):
        veh = rec.get("vehicle") if rec.get("schema") == LOOK_SCHEMA and rec.get("trusted") else None
        if veh and veh.get("lat") is not None and veh.get("lon") is not None:
            track.append((float(veh["lon"]), float(veh["lat"])))
    step = max(1, math.ceil(len(track) / MAX_TRACK_POINTS))
    return track[::step]


def zone_rings(flight: Path) -> list[tuple[str, list[list[float]]]]:
    """(label, outer ring) of each zone in zones.geojson, when the flight wrote it."""
    path = flight / "zones.geojson"
    if not path.is_file():
        return []
    features = json.loads(path.read_text(encoding="utf-8")).get("features", [])
    return [(str(f.get("properties", {}).get("label", "")), ring)
            for f in features for ring in _rings(f.get("geometry"))]


def base_map(flight: Path, tiles: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, str]]:
    """The flight's small map as SVG (track, zones, every kept tile) and each tile's outline in its pixels."""
    track = flight_track(flight)
    zones = zone_rings(flight)
    feet = {str(t["id"]): [(float(p[1]), float(p[0])) for p in t["footprint"]] for t in tiles if t.get("footprint")}
    zone_points = [(float(p[0]), float(p[1])) for _, ring in zones for p in ring]
    frame = MapFrame([*track, *zone_points, *(p for f in feet.values() for p in f)])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {MAP_W} {MAP_H}" width="{MAP_W}" '
             f'height="{MAP_H}" id="map"><rect width="{MAP_W}" height="{MAP_H}" fill="#f4f1e8"/>']
    for label, ring in zones:
        parts.append(f'<polygon class="zone {label}" points="{frame.points(ring)}"/>')
    if track:
        parts.append(f'<polyline class="track" points="{frame.points(track)}"/>')
    outlines = {tid: frame.points(f) for tid, f in feet.items()}
    parts += [f'<polygon class="kept" points="{pts}"/>' for pts in outlines.values()]
    parts.append('<polygon id="here" points=""/></svg>')
    return "".join(parts), outlines


class ReviewApp:
    """What the page asks for: the tiles, the answers so far, and the two ways to change them."""

    def __init__(self, flight: str | Path) -> None:
        self.flight = Path(flight)
        if not self.flight.is_dir():
            raise UserError(f"{self.flight} is not a folder; pass the output folder of a flight (output.dir)")
        self.tiles = read_review(self.flight)
        if not self.tiles:
            raise UserError(
                f"{self.flight} has no kept review tiles ({REVIEW_DIR}/review.jsonl is missing or empty): fly with "
                "`review: {enabled: true}` in the payload config so the flight keeps tiles for review")
        self.by_id = {str(t["id"]): t for t in self.tiles}
        classes = list(self.tiles[0].get("classes") or [])
        self.labels = [*classes, UNSURE]
        self.keys = label_keys(self.labels)
        self.map_svg, self.outlines = base_map(self.flight, self.tiles)
        self.lock = threading.Lock()
        self.book = LabelBook(self.flight, self.by_id, self.labels)

    def state(self) -> dict[str, Any]:
        tiles = [{k: t.get(k) for k in ("id", "kind", "label", "flagged", "margin", "informativeness", "scores",
                                         "thresholds", "zones_crossed", "pose", "frame", "trusted", "model_sha256")}
                 | {"outline": self.outlines.get(str(t["id"]), "")} for t in self.tiles]
        with self.lock:
            answers = {k: v["label"] for k, v in self.book.rows.items()}
        return {"flight": self.flight.name, "labels": self.labels, "keys": self.keys, "tiles": tiles,
                "answers": answers, "map": self.map_svg}

    def page_order(self) -> list[dict[str, Any]]:
        """The unlabelled tiles in the order the page offers them to a person who answers each in turn.

        The page walks `state()`'s tiles (read_review's order: most informative first), opens at the
        first unlabelled one and after each answer moves on to the next unlabelled one (`nextUnlabelled`);
        answers only add, so that walk is this list. `python -m tools.teach` answers its first N.
        """
        with self.lock:
            done = set(self.book.rows)
        return [t for t in self.tiles if str(t["id"]) not in done]

    def label(self, tile_id: str, label: str) -> dict[str, str]:
        if tile_id not in self.by_id or label not in self.labels:
            raise KeyError(f"unknown tile {tile_id!r} or label {label!r}")
        with self.lock:
            return self.book.set(tile_id, label)

    def unlabel(self, tile_id: str) -> None:
        if tile_id not in self.by_id:
            raise KeyError(f"unknown tile {tile_id!r}")
        with self.lock:
            self.book.remove(tile_id)

    def image(self, tile_id: str) -> Path | None:
        t = self.by_id.get(tile_id)
        return None if t is None else self.flight / REVIEW_DIR / str(t["image"])


def make_handler(app: ReviewApp) -> type[BaseHTTPRequestHandler]:
    """The request handler bound to one flight's app (http.server builds one per request)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "cropscout-review"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self) -> None:
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.encode("utf-8"), "text/html; charset=utf-8")
            elif self.path == "/api/state":
                self._json(HTTPStatus.OK, app.state())
            elif self.path.startswith("/tiles/") and self.path.endswith(".jpg"):
                p = app.image(self.path[len("/tiles/"):-len(".jpg")])
                if p is None or not p.is_file():
                    self._json(HTTPStatus.NOT_FOUND, {"error": "no such tile"})
                else:
                    self._send(HTTPStatus.OK, p.read_bytes(), "image/jpeg")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            # JSON only: a form or a plain-text POST from another web page open in the same browser is a
            # "simple" request that needs no permission; a JSON one does, and this server never grants it
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(min(n, 65536)) or b"{}")
                tile_id = str(body.get("id", ""))
                if self.path == "/api/label":
                    self._json(HTTPStatus.OK, {"saved": app.label(tile_id, str(body.get("label", "")))})
                elif self.path == "/api/unlabel":
                    app.unlabel(tile_id)
                    self._json(HTTPStatus.OK, {"removed": tile_id})
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            except (KeyError, ValueError, AttributeError) as err:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            except OSError as err:  # the answer is not on disk: the page must say so, not move on
                log.error("label not saved: %s", err)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"not saved: {err}"})

    return Handler


def open_server(app: ReviewApp, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The HTTP server on host:port (0: any free port), or a UserError when the port is taken."""
    try:
        return ThreadingHTTPServer((host, port), make_handler(app))
    except OSError as err:
        raise UserError(f"cannot serve the review on {host}:{port}: {err.strerror or err}. Another program (or "
                        "another `payload review`) uses that port: stop it, or pass --port with another number "
                        "(--port 0 picks a free one)") from err


def review_from_cli(flight: str | Path, port: int = DEFAULT_PORT) -> int:
    """`payload review FLIGHT_DIR`: serve until Ctrl-C; prints the address to open."""
    app = ReviewApp(flight)
    server = open_server(app, port)
    bound = server.server_address[1]
    done = len(app.book.rows)
    print(f"review: http://127.0.0.1:{bound}/  {len(app.tiles)} tiles, {done} labelled; answers go to "
          f"{app.flight / LABELS_DIR}. Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("review: stopped; every answer was already saved", flush=True)
    finally:
        server.server_close()
    return 0


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cropscout review</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#fafaf7;color:#222}
header{padding:10px 16px;background:#2f4f2f;color:#fff;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}#progress{font-size:14px}
main{display:grid;grid-template-columns:460px 380px;gap:24px;padding:16px}
#tile img{width:448px;height:448px;object-fit:contain;image-rendering:pixelated;background:#ddd;border:1px solid #999}
#facts{font-size:14px;margin-top:8px}#facts td{padding:1px 8px 1px 0}
.bar{display:inline-block;height:10px;background:#7a7;vertical-align:middle}
.thr{color:#a33}
#buttons{margin-top:12px;display:flex;gap:8px;flex-wrap:wrap}
#buttons button{font-size:16px;padding:8px 14px;border:1px solid #666;border-radius:4px;background:#fff;cursor:pointer}
#buttons button.on{background:#2f4f2f;color:#fff}
#buttons kbd{font-size:12px;color:#555;margin-left:4px}#buttons button.on kbd{color:#ddd}
#status{min-height:1.4em;font-size:14px;margin-top:6px}.err{color:#b00}
#map .zone{fill:#e3a0a0;fill-opacity:.55;stroke:#b44}
#map .zone.powdery_mildew{fill:#c9c9f0;stroke:#66c}
#map .track{fill:none;stroke:#888;stroke-width:1}#map .kept{fill:none;stroke:#4a4;stroke-width:.6}
#map #here{fill:#ff0;fill-opacity:.8;stroke:#000;stroke-width:1.5}
#strip{display:flex;flex-wrap:wrap;gap:4px;padding:0 16px 16px}
#strip div{width:52px;text-align:center;font-size:10px;cursor:pointer;border:2px solid transparent}
#strip div.cur{border-color:#000}#strip img{width:48px;height:48px;display:block}
#strip span{display:block;height:12px;overflow:hidden}
.kind{display:inline-block;padding:0 6px;border-radius:3px;background:#eee}
</style></head><body>
<header><h1>cropscout review: <span id="flight"></span></h1><span id="progress"></span>
<span style="font-size:13px">keys: label as shown on each button; <kbd>z</kbd> or <kbd>Backspace</kbd> undo;
<kbd>&larr;</kbd>/<kbd>&rarr;</kbd> browse</span></header>
<main><section id="tile"><img id="img" alt="tile"><div id="buttons"></div><div id="status"></div>
<table id="facts"></table></section><section><div id="mapbox"></div>
<p style="font-size:13px">yellow: this tile; green outlines: the other kept tiles; grey: the flight's track;
red/blue: the flight's rust/powdery mildew zones</p></section></main>
<div id="strip"></div>
<script>
"use strict";
let S = null, idx = 0, undoStack = [], busy = Promise.resolve();
const $ = (id) => document.getElementById(id);
const pretty = (s) => s.replace(/_/g, " ");
function post(path, body) {
  return fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
    .then((r) => r.json().then((j) => { if (!r.ok) throw new Error(j.error || r.status); return j; }));
}
function labelled() { return Object.keys(S.answers).length; }
function nextUnlabelled(from) {
  for (let k = 0; k < S.tiles.length; k++) {
    const i = (from + k) % S.tiles.length;
    if (!(S.tiles[i].id in S.answers)) return i;
  }
  return -1;
}
function keyOf(label) { return Object.keys(S.keys).filter((k) => S.keys[k] === label && isNaN(k))[0] || ""; }
function render() {
  const t = S.tiles[idx];
  $("flight").textContent = S.flight;
  const n = labelled();
  $("progress").textContent = `tile ${idx + 1} of ${S.tiles.length} \u00b7 ${n} labelled` +
    (n === S.tiles.length ? " \u00b7 all done" : "");
  $("progress").dataset.labelled = n;
  $("img").src = "/tiles/" + encodeURIComponent(t.id) + ".jpg";
  $("img").dataset.tile = t.id;
  $("here").setAttribute("points", t.outline || "");
  const ans = S.answers[t.id];
  $("buttons").innerHTML = "";
  S.labels.forEach((lab, i) => {
    const b = document.createElement("button");
    b.className = lab === ans ? "on" : "";
    b.dataset.label = lab;
    b.innerHTML = `${pretty(lab)} <kbd>${keyOf(lab)} / ${i + 1}</kbd>`;
    b.onclick = () => answer(lab);
    $("buttons").appendChild(b);
  });
  const rows = [["kept as", `<span class="kind">${t.kind}</span> margin ${t.margin.toFixed(3)}` +
    (t.zones_crossed.length ? ` (edge of ${t.zones_crossed.join(", ")})` : "")],
    ["model's call", `<b>${pretty(t.label)}</b>${t.flagged ? " (flagged)" : ""}`],
    ["your answer", ans ? `<b data-answer="${ans}">${pretty(ans)}</b>` : "\u2013"]];
  for (const [c, s] of Object.entries(t.scores)) {
    const thr = c in t.thresholds ? ` <span class="thr">threshold ${t.thresholds[c].toFixed(2)}</span>` : "";
    rows.push([pretty(c), `<span class="bar" style="width:${Math.round(s * 160)}px"></span> ${s.toFixed(3)}${thr}`]);
  }
  const p = t.pose || {};
  rows.push(["frame", `${t.frame.seq} at ${t.frame.utc || "?"}`]);
  const agl = p.height_agl_m != null ? `, ${p.height_agl_m.toFixed(1)} m above ground` : "";
  rows.push(["position", p.lat != null ? `${p.lat.toFixed(6)}, ${p.lon.toFixed(6)}${agl}` : "not placed"]);
  rows.push(["model sha256", (t.model_sha256 || "").slice(0, 16)]);
  $("facts").innerHTML = rows.map(([a, b]) => `<tr><td>${a}</td><td>${b}</td></tr>`).join("");
  document.querySelectorAll("#strip div").forEach((d, i) => {
    const a = S.answers[S.tiles[i].id];
    d.className = i === idx ? "cur" : "";
    d.dataset.answer = a || "";
    d.querySelector("span").textContent = a ? pretty(a) : "";
  });
}
function strip() {
  $("strip").innerHTML = "";
  S.tiles.forEach((t, i) => {
    const d = document.createElement("div");
    d.innerHTML = `<img loading="lazy" alt="" src="/tiles/${encodeURIComponent(t.id)}.jpg"><span></span>`;
    d.onclick = () => { idx = i; render(); };
    $("strip").appendChild(d);
  });
}
function say(text, bad) { $("status").textContent = text; $("status").className = bad ? "err" : ""; }
function answer(label) {
  // the tile is the one shown when this answer's turn comes: keys pressed faster than the disk label
  // one tile after another, never the same tile twice
  busy = busy.then(() => { const t = S.tiles[idx]; return post("/api/label", {id: t.id, label: label}).then(() => {
    S.answers[t.id] = label;
    undoStack.push(t.id);
    say(`saved: ${pretty(label)}`);
    const nxt = nextUnlabelled(idx + 1);
    if (nxt >= 0) idx = nxt;
    render();
  }).catch((e) => say("NOT saved: " + e.message, true)); });
}
function undo() {
  busy = busy.then(() => {
    const id = undoStack.pop();
    if (id === undefined) { say("nothing to undo"); return; }
    return post("/api/unlabel", {id: id}).then(() => {
      delete S.answers[id];
      idx = S.tiles.findIndex((t) => t.id === id);
      say("undone");
      render();
    }).catch((e) => { undoStack.push(id); say("undo NOT saved: " + e.message, true); });
  });
}
document.addEventListener("keydown", (e) => {
  if (!S || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  if (k === "z" || e.key === "Backspace") { e.preventDefault(); undo(); }
  else if (e.key === "ArrowRight") { idx = Math.min(idx + 1, S.tiles.length - 1); render(); }
  else if (e.key === "ArrowLeft") { idx = Math.max(idx - 1, 0); render(); }
  else if (k in S.keys) { e.preventDefault(); answer(S.keys[k]); }
});
fetch("/api/state").then((r) => r.json()).then((s) => {
  S = s;
  $("mapbox").innerHTML = S.map;
  strip();
  const first = nextUnlabelled(0);
  idx = first >= 0 ? first : 0;
  render();
  document.body.dataset.ready = "1";
}).catch((e) => say("could not load the tiles: " + e.message, true));
</script></body></html>
"""
