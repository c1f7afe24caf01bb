"""report.html: one self-contained page a grower opens offline in any browser after landing.

The map is inline SVG in local metres (north up): the mosaic, the disease probability on top of it
(semi-transparent), coverage gaps hatched, the zones and treatment zones outlined, the flight track;
then a table of the zones, the evidence crops behind each zone, and what was flown with which model.
Images are embedded as data URIs and the CSS is inline; there is no JavaScript, so nothing can fail
to load and nothing reaches the network. Hover titles come from SVG <title> elements.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely

from payload.files.atomic import atomic_write_text
from payload.report.data import Crop, Raster, ReportData, crops_by_zone, gather, model_facts, seen_share
from payload.report.data import treatment_rate as _rate
from payload.settings.report import ReportSection

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
REPORT_JSON = "report_facts.json"

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "rust": (214, 96, 36),
    "powdery_mildew": (150, 90, 220),
}
OTHER_COLOURS = [(230, 60, 120), (40, 160, 200), (220, 200, 40), (90, 200, 90)]
TREATMENT_COLOUR = "#1565c0"
TRACK_COLOUR = "#00e5ff"
BACKGROUND = (232, 232, 226)  # the page's map background, also under the mosaic's transparent parts


def class_colours(labels: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per disease class (the known ones fixed, others from a short list)."""
    out = dict(CLASS_COLOURS)
    extra = iter(OTHER_COLOURS * 4)
    for lab in labels:
        if lab not in out:
            out[lab] = next(extra)
    return out


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def data_uri(img_rgb_or_rgba: np.ndarray, fmt: str = ".png", quality: int = 82) -> str:
    """An RGB(A) image as a data: URI (PNG keeps transparency; JPEG is for photos)."""
    img = img_rgb_or_rgba
    conv = cv2.COLOR_RGBA2BGRA if img.ndim == 3 and img.shape[2] == 4 else cv2.COLOR_RGB2BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(np.ascontiguousarray(img), conv), params)
    if not ok:
        raise ValueError(f"could not encode a {img.shape} image as {fmt}")
    mime = "image/png" if fmt == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


def shrink(img: np.ndarray, max_px: int) -> np.ndarray:
    """The image with its longer side at most max_px (area-averaged)."""
    h, w = img.shape[:2]
    k = max(h, w) / max_px
    if k <= 1:
        return img
    return cv2.resize(img, (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)


def mosaic_jpeg_uri(r: Raster, max_px: int) -> str:
    """The mosaic flattened on the map background as a JPEG (a photo compresses ten times better so)."""
    small = shrink(r.rgba, max_px).astype(np.float32)
    a = small[..., 3:4] / 255.0
    rgb = small[..., :3] * a + np.asarray(BACKGROUND, np.float32) * (1.0 - a)
    return data_uri(np.clip(rgb, 0, 255).astype(np.uint8), ".jpg", 80)


# ---------------------------------------------------------------- the SVG map


def svg_path(geom: shapely.geometry.base.BaseGeometry) -> str:
    """An SVG path (y = -north) of a (multi)polygon, holes included (fill-rule evenodd)."""
    parts = []
    polys = [geom] if isinstance(geom, shapely.Polygon) else [g for g in getattr(geom, "geoms", [])
                                                                  if isinstance(g, shapely.Polygon)]
    for p in polys:
        for ring in [p.exterior, *p.interiors]:
            pts = list(ring.coords)
            if len(pts) < 3:
                continue
            parts.append("M" + " L".join(f"{x:.2f} {-y:.2f}" for x, y in pts) + " Z")
    return " ".join(parts)


def _image(r: Raster, href: str, extra: str = "") -> str:
    return (f'<image href="{href}" x="{r.west:.2f}" y="{-r.north:.2f}" width="{r.east - r.west:.2f}" '
            f'height="{r.north - r.south:.2f}" preserveAspectRatio="none" {extra}/>')


def map_extent(d: ReportData, margin_m: float = 5.0) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) covering the mosaic, the rasters, the zones and the track."""
    xs: list[float] = []
    ys: list[float] = []
    for r in (d.mosaic, d.probability):
        if r is not None:
            xs += [r.west, r.east]
            ys += [r.south, r.north]
    for f in [*d.zones, *(d.treatment or [])]:
        if not f.geometry.is_empty:
            b = f.geometry.bounds
            xs += [b[0], b[2]]
            ys += [b[1], b[3]]
    if d.track:
        a = np.asarray(d.track)
        xs += [float(a[:, 0].min()), float(a[:, 0].max())]
        ys += [float(a[:, 1].min()), float(a[:, 1].max())]
    if not xs:
        return None
    return min(xs) - margin_m, min(ys) - margin_m, max(xs) + margin_m, max(ys) + margin_m


def scale_bar(w: float, west: float, south: float, font: float) -> str:
    nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000]
    length = max([n for n in nice if n <= w / 5] or [1])
    x0, y0 = west + w * 0.03, -south - font * 1.2
    return (f'<g class="scale"><rect x="{x0 - font * 0.3:.2f}" y="{y0 - font * 1.6:.2f}" '
            f'width="{length + font * 0.6:.2f}" height="{font * 2.2:.2f}" fill="white" opacity="0.8"/>'
            f'<line x1="{x0:.2f}" y1="{y0:.2f}" x2="{x0 + length:.2f}" y2="{y0:.2f}" stroke="black" '
            f'stroke-width="3" vector-effect="non-scaling-stroke"/>'
            f'<text x="{x0:.2f}" y="{y0 - font * 0.4:.2f}" font-size="{font:.2f}">{length} m</text></g>')


def svg_map(d: ReportData, cfg: ReportSection, colours: Mapping[str, tuple[int, int, int]]) -> str:
    """The map as inline SVG (empty string when nothing can be placed)."""
    ext = map_extent(d)
    if ext is None:
        return ""
    west, south, east, north = ext
    w, h = east - west, north - south
    font = max(w, h) / 70.0
    out = [f'<svg class="map" viewBox="{west:.2f} {-north:.2f} {w:.2f} {h:.2f}" xmlns="http://www.w3.org/2000/svg" '
           f'role="img" aria-label="field map">',
           '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="8" stroke="#222" stroke-width="1.5"/>'
           '</pattern></defs>',
           f'<rect x="{west:.2f}" y="{-north:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{hex_colour(BACKGROUND)}"/>']
    if d.mosaic is not None:
        out.append(_image(d.mosaic, mosaic_jpeg_uri(d.mosaic, cfg.map_max_px)))
    if d.probability is not None:
        prob = d.probability.rgba
        if max(prob.shape[:2]) > cfg.map_max_px:  # a large field: cells finer than the screen shows
            k = cfg.map_max_px / max(prob.shape[:2])
            prob = cv2.resize(prob, (max(1, round(prob.shape[1] * k)), max(1, round(prob.shape[0] * k))),
                              interpolation=cv2.INTER_NEAREST)
        out.append(_image(d.probability, data_uri(prob), 'style="image-rendering:pixelated"'))
    once, _well, n = seen_share(d)
    if n is not None and 1 in d.seen and n > 1:
        thin = d.seen[1].difference(d.seen[n])
        if not thin.is_empty:
            out.append(f'<path d="{svg_path(thin)}" fill="url(#hatch)" fill-rule="evenodd" opacity="0.55">'
                       f'<title>seen fewer than {n} times</title></path>')
    if 1 in d.seen and not d.seen[1].is_empty:
        out.append(f'<path d="{svg_path(d.seen[1])}" fill="none" stroke="#222" stroke-dasharray="6 4" '
                   'stroke-width="1.5" vector-effect="non-scaling-stroke" fill-rule="evenodd">'
                   '<title>edge of the ground seen</title></path>')
    if d.track:
        pts = " ".join(f"{e:.2f},{-n_:.2f}" for e, n_ in d.track)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{TRACK_COLOUR}" stroke-width="1.5" '
                   'stroke-opacity="0.85" vector-effect="non-scaling-stroke"><title>flight track</title></polyline>')
    for t in d.treatment or []:
        if t.geometry.is_empty:
            continue
        tip = ", ".join(f"{k} {v}" for k, v in t.properties.items() if not isinstance(v, (dict, list)))
        out.append(f'<path d="{svg_path(t.geometry)}" fill="{TREATMENT_COLOUR}" fill-opacity="0.10" '
                   f'stroke="{TREATMENT_COLOUR}" stroke-width="2.5" stroke-dasharray="10 5" fill-rule="evenodd" '
                   f'vector-effect="non-scaling-stroke"><title>treatment zone: {esc(tip)}</title></path>')
    for z in d.zones:
        p = z.properties
        col = hex_colour(colours.get(str(p.get("label")), (255, 0, 255)))
        out.append(f'<path d="{svg_path(z.geometry)}" fill="none" stroke="white" stroke-width="5" '
                   'vector-effect="non-scaling-stroke"/>')
        out.append(f'<path d="{svg_path(z.geometry)}" fill="none" stroke="{col}" stroke-width="2.5" '
                   'fill-rule="evenodd" '
                   f'vector-effect="non-scaling-stroke"><title>{esc(p.get("id"))} {esc(p.get("label"))}: '
                   f'{esc(p.get("area_m2"))} m2, peak p {esc(p.get("peak_p"))}</title></path>')
        if not z.geometry.is_empty:
            c = z.geometry.representative_point()
            b = z.geometry.bounds
            out.append(f'<text x="{c.x:.2f}" y="{-b[3] - font * 0.3:.2f}" font-size="{font:.2f}" '
                       f'text-anchor="middle" class="zlabel">{esc(p.get("id"))}</text>')
    out.append(scale_bar(w, west, south, font))
    out.append(f'<text x="{east - font * 1.5:.2f}" y="{-north + font * 1.6:.2f}" font-size="{font * 1.2:.2f}" '
               'text-anchor="middle" class="north">N &#8593;</text>')
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------- the tables and the gallery


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return esc(v)


def zones_table(d: ReportData, colours: Mapping[str, tuple[int, int, int]]) -> str:
    """One row per zone: class, area, probability, looks, position uncertainty, rate (with a prescription)."""
    if not d.zones:
        return '<p class="none">No disease zone was found on the ground seen.</p>'
    rx = d.treatment is not None
    head = ["zone", "class", "area m&sup2;", "peak p", "mean p", "looks (max / mean)", "&plusmn; m",
            "centre lat, lon"] + (["rate"] if rx else [])
    rows = []
    for z in sorted(d.zones, key=lambda f: str(f.properties.get("id"))):
        p = z.properties
        col = hex_colour(colours.get(str(p.get("label")), (255, 0, 255)))
        cells = [f'<span class="swatch" style="background:{col}"></span>{esc(p.get("id"))}',
                 esc(str(p.get("label", "")).replace("_", " ")), _fmt(p.get("area_m2"), 1), _fmt(p.get("peak_p")),
                 _fmt(p.get("mean_p")), f'{_fmt(p.get("looks_max"))} / {_fmt(p.get("looks_mean"), 1)}',
                 _fmt(p.get("uncertainty_m"), 1), f'{_fmt(p.get("lat"), 6)}, {_fmt(p.get("lon"), 6)}']
        if rx:
            r = _rate(d, z)
            cells.append("-" if r is None else f"{_fmt(r[0])}{' ' + esc(r[1]) if r[1] else ''}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _thumb(out_dir: Path, c: Crop, px: int) -> str | None:
    img = cv2.imread(str(out_dir / c.path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return data_uri(shrink(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), px), ".jpg", 78)


def gallery(d: ReportData, cfg: ReportSection) -> str:
    """Each zone's most confident crops (the images the call was made on), downscaled."""
    if cfg.crops_per_zone == 0 or not d.zones:
        return ""
    by_zone = crops_by_zone(d, cfg.crops_per_zone)
    parts = []
    for zid in sorted(by_zone):
        figs = []
        for c in by_zone[zid]:
            uri = _thumb(d.out_dir, c, cfg.crop_px)
            if uri is None:
                continue
            figs.append(f'<figure><img src="{uri}" alt="{esc(c.path)}"><figcaption>{esc(c.label)} '
                        f'{c.confidence:.2f}<br>{esc(c.utc[11:19])}</figcaption></figure>')
        body = "".join(figs) or '<p class="none">no crop saved inside this zone (sinks.crops off, or the disk ' \
                                'guard stopped them)</p>'
        parts.append(f'<div class="zone"><h3>{esc(zid)}</h3><div class="crops">{body}</div></div>')
    return "\n".join(parts)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s"


def flown_facts(d: ReportData) -> list[tuple[str, str]]:
    """What was flown, as (label, value) rows."""
    once, well, n = seen_share(d)
    rows = [("flown (UTC)", f"{esc(d.first_utc)} &ndash; {esc(d.last_utc)}"),
            ("duration", _duration(d.duration_s)),
            ("frames classified", f"{d.looks} ({d.looks_trusted} with a trusted pose)"),
            ("sightings recorded", str(d.detections))]
    if once is not None:
        rows.append(("ground seen", f"{once / 1e4:.2f} ha ({once:,.0f} m&sup2;)"))
    if well is not None and once:
        rows.append((f"coverage (seen &ge; {n} times)", f"{100.0 * well / once:.1f} % of the ground seen "
                                                         f"({well / 1e4:.2f} ha)"))
    if d.mosaic_info:
        mi = d.mosaic_info
        rows.append(("mosaic", f"{mi.get('frames')} frames at {100 * float(mi.get('m_per_px', 0)):.0f} cm/px "
                               "(mosaic.tif)"))
    st = d.stats or {}
    if st:
        rows.append(("backend", esc(st.get("backend"))))
        rows.append(("frames captured / dropped",
                     f"{_fmt(st.get('frames_captured'))} / {_fmt(st.get('frames_dropped'))}"))
        rows.append(("inference ms (p50)", _fmt(st.get("inference_ms_p50"), 1)))
        rates = st.get("telemetry_rates") or {}
        if rates.get("measured"):
            rows.append(("telemetry rates (mean / slowest window)", _rates_text(rates)))
    if d.map_info:
        rows.append(("map cell", f"{_fmt(d.map_info.get('cell_m'))} m"))
    return rows


def _rates_text(rates: Mapping[str, Any]) -> str:
    """What geotagging was fed: the pose streams' mean and slowest rates, and how they were asked for."""
    parts = []
    for name in ("ATTITUDE", "GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"):
        m = (rates.get("measured") or {}).get(name)
        if m:
            parts.append(f"{name} {_fmt(m.get('mean_hz'), 1)} / {_fmt(m.get('min_window_hz'), 1)} Hz")
    return esc("; ".join(parts) + f" (via {rates.get('method')})")


def model_rows(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The model card's figures as (label, value) rows."""
    def pct(k: str) -> str:
        v = m.get(k)
        return "-" if v is None else f"{v:.1f} %"

    rows = [("model sha256", esc((m.get("sha256") or "-")[:16]))]
    if m.get("profile") is not None or m.get("classes"):
        rows += [("build", f"{esc(m.get('profile'))} profile, {esc(m.get('created_utc'))}"),
                 ("classes", esc(", ".join(m.get("classes") or []))),
                 ("input", f"{esc(m.get('input_px', ['?'])[0])} px tiles"),
                 ("int8 test accuracy", f"{pct('int8_accuracy_pct')} on {_fmt(m.get('test_images'))} images"),
                 ("disease recall / false alarms at thresholds",
                  f"{pct('disease_recall_pct')} / {pct('false_alarm_pct')}"),
                 ("held-out looks accuracy" + (f" (worst factor: {esc(m.get('heldout_worst_factor'))})"
                                               if m.get("heldout_worst_factor") else ""), pct("heldout_accuracy_pct")),
                 ("working ground resolution", "-" if m.get("working_gsd_mm") is None
                  else f"{_fmt(m.get('working_gsd_mm'))} mm per model-input pixel"
                  + (f" ({esc(m.get('working_gsd_stage'))} disease)" if m.get("working_gsd_stage") else "")),
                 ("thresholds", esc(", ".join(f"{k} {v:.2f}" for k, v in (m.get("thresholds") or {}).items()))),
                 ("Edge TPU",
                  "compiled" if m.get("edgetpu_compiled") else f"not compiled: {esc(m.get('edgetpu_note'))}")]
    else:
        rows.append(("model card", "not recorded with this folder (the report was rebuilt without the flight's card)"))
    return rows


def _weights_text(m: Mapping[str, Any]) -> str:
    """Whether the backbone started from learnt features: the first thing to doubt in a high test score."""
    pre, w = m.get("backbone_pretrained"), m.get("backbone_weights")
    if pre is None:
        return "not recorded"
    if not pre:
        if str(m.get("backbone") or "").startswith("small CNN"):
            return ("<strong>no</strong>: a small CNN trained from scratch (weights: none; not ResNet-50), a model "
                    "for demos and tests, not to fly")
        return "<strong>no</strong>: random init (weights: none), a model for demos and tests, not to fly"
    return f"yes ({esc(w)})"


def honest_lines(d: ReportData, m: Mapping[str, Any]) -> list[str]:
    """The first lines of the page: what the accuracy figures further down do not say (HTML fragments).

    The card's warnings, whether the backbone was pretrained, what it was trained on, the ground
    resolution it was made for, and placeholder rates: each can make a good-looking map wrong to act on.
    """
    gsd = m.get("working_gsd_mm")
    lines = [f"<strong>model warning:</strong> {esc(w)}" for w in m.get("warnings") or []]
    lines += [f"backbone pretrained: {_weights_text(m)}",
              f"training data: {esc(m.get('training_data') or 'not recorded')}",
              "working ground resolution: " + ("not stated" if gsd is None
                                               else f"{_fmt(gsd)} mm per model-input pixel"
                                               + (f", for {esc(m.get('working_gsd_stage'))} disease"
                                                  if m.get("working_gsd_stage") else ""))]
    if d.rates_placeholder:
        lines.append("<strong>rates not set: on/off map</strong> (every treatment zone has default_rate; set "
                     "prescription.rates per class before spraying)")
    return lines


CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:0;color:#1d2a1d;background:#fafaf7}
header{background:#2e5e2e;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
main{padding:16px 24px;max-width:1400px}
h2{font-size:18px;border-bottom:2px solid #cfd8c7;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:10px 0 6px}
.map{width:100%;max-height:82vh;border:1px solid #bbb;background:#e8e8e2}
.map text{font-family:DejaVu Sans,Arial,sans-serif;paint-order:stroke;stroke:#fff;stroke-width:.25px}
.zlabel{font-weight:bold}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:13px;margin:8px 0}
.legend span{display:inline-flex;align-items:center;gap:6px}
.key{display:inline-block;width:22px;height:12px;border:2px solid #333}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:middle}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #cfd8c7;padding:4px 8px;text-align:left}th{background:#eef3ea}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:18px}
.crops{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;font-size:11px;text-align:center}figure img{display:block;border:1px solid #999}
.none{color:#666;font-style:italic}
footer{font-size:11px;color:#666;padding:16px 24px}
.caveats{background:#fff6d6;border-left:4px solid #c79100;margin:0;padding:8px 24px 8px 40px;font-size:13px}
"""


def legend(d: ReportData, colours: Mapping[str, tuple[int, int, int]]) -> str:
    items = []
    if d.mosaic is not None:
        items.append("<span>background: the flight's own frames (mosaic)</span>")
    for lab in d.labels:
        c = hex_colour(colours.get(lab, (255, 0, 255)))
        items.append(f'<span><i class="key" style="border-color:{c}"></i>{esc(lab.replace("_", " "))} zone; '
                     f'tint = its probability</span>')
    if d.treatment is not None:
        items.append(f'<span><i class="key" style="border-color:{TREATMENT_COLOUR};border-style:dashed"></i>'
                     'treatment zone</span>')
    items.append(f'<span><i class="key" style="border-color:{TRACK_COLOUR};height:0"></i>flight track</span>')
    if d.seen:
        items.append('<span><i class="key" style="border-style:dashed"></i>edge of the ground seen; hatched: '
                     'seen too few times to trust</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _facts_table(rows: Iterable[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def render(d: ReportData, cfg: ReportSection, model: Mapping[str, Any]) -> str:
    """The whole page."""
    colours = class_colours(d.labels)
    title = f"Field report {d.first_utc[:10] if d.first_utc else ''}".strip()
    n_zones = len(d.zones)
    summary = (f"{n_zones} disease zone{'s' if n_zones != 1 else ''}"
               + (f", {len(d.treatment)} treatment zone{'s' if len(d.treatment) != 1 else ''}"
                  if d.treatment is not None else "")
               + f" &middot; {d.looks} frames &middot; {_duration(d.duration_s)}")
    svg = svg_map(d, cfg, colours) or '<p class="none">Nothing was placed on the ground (no trusted pose).</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body><header><h1>{esc(title)}</h1><p>{summary}</p></header>
<ul class="caveats">{"".join(f"<li>{line}</li>" for line in honest_lines(d, model))}</ul><main>
<h2>Map</h2>
{svg}
{legend(d, colours)}
<h2>Disease zones</h2>
{zones_table(d, colours)}
<h2>Evidence behind each zone</h2>
{gallery(d, cfg) or '<p class="none">No zones, or crops are not shown (report.crops_per_zone 0).</p>'}
<h2>What was flown</h2>
<div class="facts"><div><h3>Flight</h3>{_facts_table(flown_facts(d))}</div>
<div><h3>Model</h3>{_facts_table(model_rows(model))}</div></div>
</main><footer>cropscout payload &middot; written from {esc(d.out_dir.name)}/ (detections.jsonl, zones.geojson,
coverage.geojson, probability_*.tif, mosaic.tif{', treatment.geojson' if d.treatment is not None else ''}).
Positions are as good as the drone's GPS: see each zone's &plusmn; m.</footer></body></html>
"""


def write_report(out_dir: str | Path, cfg: ReportSection | None = None, card: Mapping[str, Any] | None = None,
                 stats: Mapping[str, Any] | None = None) -> Path:
    """Write report.html (and report_facts.json, its facts) from the output folder's files.

    `card` is the model card the flight ran (at the end of `payload run`); without it (in
    `payload export`) the model facts an earlier report_facts.json recorded are reused.
    """
    out = Path(out_dir)
    cfg = cfg or ReportSection()
    d = gather(out, class_colours(_labels_hint(out)))
    if stats is not None:
        d.stats = dict(stats)
    previous = _previous_facts(out)
    model = model_facts(card, d.model_sha256) if card is not None else previous.get("model") or model_facts(
        None, d.model_sha256)
    d.model = model
    page = render(d, cfg, model)
    atomic_write_text(out / REPORT_HTML, page)
    once, well, n = seen_share(d)
    facts = {"model": model, "zones": len(d.zones),
             "treatment_zones": None if d.treatment is None else len(d.treatment),
             "looks": d.looks, "looks_trusted": d.looks_trusted, "first_utc": d.first_utc, "last_utc": d.last_utc,
             "seen_m2": once, "seen_well_m2": well, "coverage_min_looks": n,
             "mosaic": d.mosaic is not None, "rates_placeholder": d.rates_placeholder,
             "html_bytes": len(page.encode("utf-8"))}
    atomic_write_text(out / REPORT_JSON, json.dumps(facts, indent=2, allow_nan=False) + "\n")
    log.info("report: %s (%.0f kB, %d zones)", out / REPORT_HTML, len(page) / 1024, len(d.zones))
    return out / REPORT_HTML


def _labels_hint(out: Path) -> list[str]:
    return sorted(p.stem.removeprefix("probability_") for p in out.glob("probability_*.tif"))


def _previous_facts(out: Path) -> dict[str, Any]:
    p = out / REPORT_JSON
    if not p.is_file():
        return {}
    try:
        v = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}

