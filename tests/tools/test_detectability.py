"""tools.detectability: the altitude arithmetic, the physics check, the verdict and a whole small run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.detectability import (
    altitude_for_gsd_m,
    coarsest_seen,
    frame_gsd_mm,
    physics_problems,
    scale_notes,
    seen_band,
    stage_working_gsd,
    verdict,
)


def test_altitude_for_a_resolution_matches_the_camera_geometry() -> None:
    # Raspberry Pi Camera Module 2: 3.68 mm sensor, 3.04 mm lens. At 640 px and h metres the frame's
    # GSD is h * 3.68 / (3.04 * 640); a 160 px tile (4 across) resized to 96 px is 160 / 96 times coarser.
    h = altitude_for_gsd_m(20.0, 3.04, 3.68, 96, 4)
    frame_gsd_mm_at_h = h * 1000 * 3.68 / (3.04 * 640)
    assert frame_gsd_mm_at_h * 160 / 96 == pytest.approx(20.0)
    assert frame_gsd_mm(20.0, 96) == pytest.approx(20.0 * 96 / 160)
    # more tiles across means finer tiles from the same height: higher flight for the same resolution
    assert altitude_for_gsd_m(20.0, 3.04, 3.68, 96, 8) == pytest.approx(2 * h)


def test_coarsest_seen_stops_at_the_first_miss() -> None:
    assert coarsest_seen({1.0: 1.0, 2.0: 0.95, 4.0: 0.8, 8.0: 0.92}) == 2.0  # 8 mm after a miss does not count
    assert coarsest_seen({1.0: 0.5, 2.0: 0.95}) is None
    assert coarsest_seen({1.0: 1.0, 2.0: None}) == 1.0
    # found everywhere by a bundle that also flags healthy canopy there: not seen
    # found everywhere, but healthy canopy is flagged at 2 mm too: one rung alone is no band
    assert coarsest_seen({1.0: 1.0, 2.0: 1.0}, false_alarm={1.0: 0.05, 2.0: 0.9}) is None
    assert coarsest_seen({1.0: 1.0, 2.0: 1.0, 4.0: 1.0}, false_alarm={1.0: 0.05, 2.0: 0.05, 4.0: 0.9}) == 2.0
    assert coarsest_seen({1.0: 1.0}, false_alarm={1.0: 0.5}) is None
    assert coarsest_seen({1.0: 1.0}) == 1.0  # one rung measured: it is the band


def test_a_band_need_not_reach_the_finest_rung() -> None:
    # a bundle that does not know the close-up look: missed at 2 mm, seen from 8 mm up
    recall = {1.0: 1.0, 2.0: 0.79, 4.0: 0.88, 8.0: 0.94, 16.0: 0.94, 32.0: 1.0}
    assert seen_band(recall) == (8.0, 32.0) and coarsest_seen(recall) == 32.0
    # a lone coarse rung after misses is luck, not a band
    assert seen_band({1.0: 0.95, 2.0: 0.95, 4.0: 0.5, 8.0: 0.95}) == (1.0, 2.0)


def _table(early32: float, fa32: float) -> tuple[dict, dict]:
    recall = {"rust": {"early": {1.0: 1.0, 32.0: early32}, "late": {1.0: 1.0, 32.0: 1.0}}}
    return recall, {1.0: 0.0, 32.0: fa32}


def test_early_disease_seen_at_32_mm_is_not_physical() -> None:
    recall, fa = _table(early32=0.95, fa32=0.0)
    problems = physics_problems(recall, fa)
    assert len(problems) == 1 and "early rust found at 32 mm/px" in problems[0]
    # the same recall from a bundle that flags every healthy tile too is a false-alarm machine, not physics
    recall, fa = _table(early32=0.95, fa32=0.9)
    assert physics_problems(recall, fa) == []
    recall, fa = _table(early32=0.1, fa32=0.0)
    assert physics_problems(recall, fa) == []


def test_a_bundle_blind_up_close_is_noted_not_failed() -> None:
    recall = {"powdery_mildew": {"moderate": {1.0: 0.3, 8.0: 0.6, 32.0: 0.9}}}
    assert physics_problems(recall, {1.0: 0.0, 8.0: 0.0, 32.0: 0.0}) == []
    (note,) = scale_notes(recall)
    assert "recall 0.30 at 1 mm/px but 0.90 at 32 mm/px" in note


def test_verdict_checks_recall_at_the_cards_working_resolution() -> None:
    recall = {"rust": {"moderate": {8.0: 0.95, 16.0: 0.5}}, "powdery_mildew": {"moderate": {8.0: 0.92, 16.0: 0.91}}}
    assert verdict(recall, 8.0, []) == []
    missed = verdict(recall, 16.0, [])
    assert len(missed) == 1 and "moderate rust recall at the card's working resolution 16 mm/px is 0.50" in missed[0]
    assert "states no working resolution at any stage" in verdict(recall, None, [])[0]
    assert verdict(recall, 8.0, ["physics"]) == ["physics"]
    # a bundle that flags healthy canopy as well finds every disease: its recall is worth nothing
    (miss,) = verdict(recall, 8.0, [], false_alarm={8.0: 0.5})
    assert "0.50 of healthy tiles flagged at the card's working resolution 8 mm/px" in miss


def test_verdict_checks_each_stage_the_field_trial_states() -> None:
    recall = {"rust": {"moderate": {8.0: 0.3}, "late": {8.0: 0.95, 32.0: 0.6}},
              "powdery_mildew": {"moderate": {8.0: 0.92}, "late": {8.0: 1.0, 32.0: 1.0}}}
    # the ladder's moderate figure is gone; late is stated at 8 mm and holds there
    assert verdict(recall, None, [], stage_gsd_mm={"late": 8.0, "moderate": None}) == []
    (miss,) = verdict(recall, None, [], stage_gsd_mm={"late": 32.0})
    assert "late rust recall at the card's field-trial resolution for the late stage 32 mm/px is 0.60" in miss
    # both statements are checked when the card has both
    assert len(verdict(recall, 8.0, [], stage_gsd_mm={"late": 8.0})) == 1


def test_a_stage_is_seen_where_its_worst_disease_is() -> None:
    seen = {"rust": {"early": None, "moderate": None, "late": 32.0},
            "powdery_mildew": {"early": None, "moderate": 16.0, "late": 64.0}}
    assert stage_working_gsd(seen) == {"early": None, "moderate": None, "late": 32.0}


class _ColourObserver:
    """A stand-in classifier that reads canopy colour as a pathologist's eye would: rust and mildew both
    lift red against green (orange pustules and yellow halos; white colonies). Its one threshold sits
    between healthy and late-diseased wheat in the nominal light (healthy wheat reads red/green about
    0.72-0.75 through the camera chain); it knows nothing of how the world draws either."""

    def __init__(self, bundle: object) -> None:
        self.bundle = bundle

    def __call__(self, batch: np.ndarray) -> list[tuple[str, bool]]:
        out = []
        for tile in batch.astype(np.float64):
            r, g = tile[..., 0].mean(), tile[..., 1].mean()
            out.append(("rust", True) if r > 0.82 * g else ("healthy", False))
        return out


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.payload.tinymodel import build_tflite, write_bundle

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    write_bundle(out, build_tflite())
    card = json.loads((out / "model_card.json").read_text())
    card["working_gsd_mm"] = 4.0
    (out / "model_card.json").write_text(json.dumps(card))
    return out


def test_a_small_run_writes_a_physical_table(tiny_bundle: Path) -> None:
    from tools.detectability import markdown, run

    res = run(tiny_bundle, [1.0, 32.0], frames=1, seed=5, classify_factory=_ColourObserver,
              drawn_light=False)  # one frame: wheat, in the light the observer's threshold is set for
    assert res["working_gsd_mm"] == 4.0 and res["gsd_mm"] == [1.0, 4.0, 32.0]
    # late disease colours the canopy: the observer sees it at every resolution; early rust vanishes
    assert res["recall"]["rust"]["late"]["32"] >= 0.9
    assert res["recall"]["rust"]["early"]["32"] <= 0.5
    assert res["physics_problems"] == []
    md = markdown(res)
    assert "| rust | late |" in md and "| rpi_cam_v2 | rust |" in md


def test_record_writes_a_field_trial_the_payload_reads(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from payload.bundle import load_bundle
    from tools.detectability import field_block, record_on_card, run

    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, b)
    res = run(b, [16.0, 32.0], frames=1, seed=5, classify_factory=_ColourObserver, drawn_light=False)
    # the observer calls every disease rust, so mildew is never "seen": judge the stages by rust alone
    assert res["stage_working_gsd_mm"]["late"] is None
    res["stage_working_gsd_mm"] = stage_working_gsd({"rust": res["coarsest_seen_gsd_mm"]["rust"]})
    record_on_card(b, field_block(res, "python -m tools.detectability ... --seed 5 --record"))
    card = load_bundle(b).card  # the files' hashes still hold: the card is not among them
    block = card.field_detectability
    assert block is not None and block["seed"] == 5
    assert block["working_gsd_mm_by_stage"] == res["stage_working_gsd_mm"]
    late = res["stage_working_gsd_mm"]["late"]
    assert late is not None  # the observer sees late rust
    assert card.stage_gsd("late")[:2] == ("late", late)
    # with no stage asked, the earliest the card sees; a stage never seen has no figure
    st, g, _ = card.stage_gsd()
    assert g is not None and st in ("early", "moderate", "late")
    assert card.stage_gsd("early")[1] is None or res["stage_working_gsd_mm"]["early"] is not None
