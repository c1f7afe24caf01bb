"""tools.missions, tools.bench and tools.soak: summaries, targets, and an exit status that tells a miss.

The real flights take minutes each (`make missions`); here the mission itself is replaced by a
function returning report.json contents, so the summary, the target checks and the exit status
are tested on hand-made reports, fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from flight_sim.scenario import load_scenario, random_scenario
from tests.payload import tinymodel
from tools.bench import missed_targets
from tools.missions import RECORDED_SCENARIOS, MissionsError, Targets, misses, resolve_scenarios, run, summary_row

GOOD = {"scenario": "s.yaml", "seed": 7, "patches_total": 3, "patches_found": 3, "false_zones": 0, "iou_mean": 0.6,
        "centroid_error_m_median": 0.8, "centroid_error_m_p95": 2.5, "coverage_fraction": 0.97,
        "frames_captured": 1000, "frames_processed": 600, "frames_dropped": 400, "backend": "cpu",
        "treatment": {"patches_treated": 3, "treated_m2": 1500.0, "treated_ratio": 1.8}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # only the card is read (profile, sha256): a placeholder model file is enough
    return tinymodel.write_bundle(tmp_path_factory.mktemp("b") / "bundle", b"not a model: never run here")


def test_a_good_row_meets_the_default_targets() -> None:
    assert misses(summary_row("default", GOOD), Targets()) == []


@pytest.mark.parametrize(("change", "fragment"), [
    ({"patches_found": 2}, "found 2/3 patches"),
    ({"false_zones": 3}, "3 false zones (> 0)"),
    ({"iou_mean": 0.1}, "mean IoU 0.10 (< 0.2)"),
    ({"centroid_error_m_median": 3.5}, "centroid error median 3.50 m (> 1 m)"),
    ({"centroid_error_m_p95": 7.0}, "centroid error p95 7.00 m (> 3 m)"),
    ({"coverage_fraction": 0.5}, "field coverage 50.0%"),
    ({"coverage_fraction": None}, "field coverage unknown"),
    ({"treatment": {"patches_treated": 2, "treated_m2": 1500.0, "treated_ratio": 1.8}},
     "2/3 patches inside a treatment zone"),
    ({"treatment": {"patches_treated": 3, "treated_m2": 4000.0, "treated_ratio": 3.4}},
     "treated area 3.40x the true patches grown by the margin (> 3x)"),
    ({"treatment": None}, "no prescription"),
])
def test_each_target_can_be_missed(change: dict, fragment: str) -> None:
    got = misses(summary_row("default", {**GOOD, **change}), Targets())
    assert len(got) == 1 and fragment in got[0], got


def test_dropped_share_is_reported_only_unless_a_target_is_set() -> None:
    row = summary_row("x", GOOD)
    assert row["dropped_share"] == pytest.approx(0.4)
    assert misses(row, Targets()) == []
    assert misses(row, Targets(max_dropped_share=0.3)) == ["40% of frames dropped (> 30%)"]
    assert misses(summary_row("x", {**GOOD, "patches_found": 0}), Targets(min_found_share=None)) == []


def test_scenario_names(tmp_path: Path) -> None:
    specs = resolve_scenarios(["default", "random-11"], tmp_path)
    assert specs[0][1].name == "default.yaml"
    # random-SEED is exactly what `flight-sim random-scenario --seed SEED` writes
    assert load_scenario(specs[1][1]).model_dump() == random_scenario(11).model_dump()
    with pytest.raises(MissionsError, match="no file"):
        resolve_scenarios([f"mine={tmp_path / 'missing.yaml'}"], tmp_path)
    with pytest.raises(MissionsError, match="unknown scenario name 'random-x'"):
        resolve_scenarios(["random-x"], tmp_path)


def _fly_from(reports: dict[str, dict]):
    flown: list[tuple[str, Path]] = []

    def fly(scenario: Path, out: Path, bundle: Path, speed: float, log_level: str, **_kw) -> dict:
        flown.append((out.name, bundle))
        return reports[out.name]

    return fly, flown


def test_summary_files_and_exit_status(tmp_path: Path, bundle: Path, capsys) -> None:
    fly, flown = _fly_from({"default": GOOD, "random-23": {**GOOD, "seed": 23, "false_zones": 5}})
    out = tmp_path / "missions"
    code = run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default", "random-23", "--drawn", "0"],
               fly=fly)
    assert code == 1  # random-23 has 5 false zones
    assert [name for name, _ in flown] == ["default", "random-23"] and {b for _, b in flown} == {bundle}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False and summary["bundle_profile"] == "tiny-test"
    assert summary["bundle_model_sha256"] == tinymodel.sha256_file(bundle / "model_int8.tflite")
    assert [r["misses"] for r in summary["rows"]] == [[], ["5 false zones (> 0)"]]
    md = (out / "summary.md").read_text()
    assert "| default | 7 | 3/3 | 0 | 0.80 / 2.50 | 0.60 | 97.0% | 3/3, 1.80x | 400/1000 | -/- | cpu | ok |" in md
    assert "MISS: 5 false zones (> 0)" in md and "TARGET MISSED" in md
    assert "--scenarios default random-23" in summary["command"]
    # the same reports pass with the threshold overridden on the command line
    code = run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default", "random-23",
                "--max-false-zones", "5", "--drawn", "0"], fly=fly)
    assert code == 0 and json.loads((out / "summary.json").read_text())["ok"] is True
    assert "all targets met" in capsys.readouterr().out


def test_not_a_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissionsError, match="not a model bundle"):
        run(["--bundle", str(tmp_path), "--out", str(tmp_path / "o")], fly=_fly_from({})[0])


def test_bench_missed_targets() -> None:
    ok = {"pipeline_efficiency": 0.97, "rss_mb": 120.0, "startup_s": 1.2, "tensorflow_loaded": False,
          "map_update_ms_p50": 1.5, "map_memory_mb_100ha": 15.0, "choose_share_of_tile": 0.01}
    assert missed_targets(ok) == []
    assert missed_targets({**ok, "choose_share_of_tile": 0.25}) == ["choose_share_of_tile 0.25 (target <= 0.1)"]
    assert missed_targets({**ok, "map_memory_mb_100ha": 22.3}) == ["map_memory_mb_100ha 22.3 (target <= 20.0)"]
    assert missed_targets({**ok, "pipeline_efficiency": 0.9}) == ["pipeline_efficiency 0.9 (target >= 0.95)"]
    assert missed_targets({**ok, "tensorflow_loaded": True}) == [
        "tensorflow loaded in the payload process (target: never)"]
    strict = {"pipeline_efficiency": (">=", 2.0), "rss_mb": ("<=", 250.0), "startup_s": ("<=", 2.0)}
    assert missed_targets(ok, strict) == ["pipeline_efficiency 0.97 (target >= 2.0)"]


def test_soak_flies_each_scouting_rate_and_fails_on_a_leak(tmp_path: Path, monkeypatch, capsys) -> None:
    import tools.soak as soak

    flown: list[float] = []

    def fake_run_soak(bundle, out_dir, *, flight_s, fps, flag_rate, log, rss_limit_mb=soak.RSS_LIMIT_MB):
        flown.append(flag_rate)
        failures = ["RSS grew 9.00 MB after warm-up"] if flag_rate == 0.10 else []
        return soak.SoakReport(
            flight_s=flight_s, wall_s=1.0, frames=10, frames_dropped=0, tiles=120, detections=0, handler_errors=0,
            warmup_s=0.0, rss_start_mb=100.0, rss_end_mb=100.0, rss_growth_mb=0.0, rss_growth_kb_per_detection=None,
            threads_py=(1, 1), threads_native=(1, 1), fds=(3, 3), tile_ms_first=1.0, tile_ms_last=1.0,
            ok=not failures, failures=failures, samples=[])

    monkeypatch.setattr(soak, "run_soak", fake_run_soak)
    monkeypatch.setattr(soak, "load_bundle", lambda p: SimpleNamespace(path=Path(p)))
    args = ["--bundle", "x", "--hours", "0.01", "--json", str(tmp_path / "soak.json")]
    assert soak.main(args) == 1
    assert flown == [0.0, 0.02, 0.10]
    assert set(json.loads((tmp_path / "soak.json").read_text())) == {"healthy", "scouting_2pct", "scouting_10pct"}
    assert "MISS scouting_10pct: RSS grew 9.00 MB" in capsys.readouterr().err
    flown.clear()
    assert soak.main([*args, "--scouting-rate", "0.02"]) == 0 and flown == [0.0, 0.02]


def test_seeds_drawn_at_run_time_are_flown_printed_and_marked(tmp_path: Path, bundle: Path, capsys) -> None:
    flown: list[str] = []

    def fly(scenario: Path, out: Path, b: Path, speed: float, log_level: str, **_kw) -> dict:
        flown.append(out.name)
        seed = int(out.name.split("-")[1]) if out.name.startswith("random-") else 7
        return {**GOOD, "seed": seed}

    out = tmp_path / "missions"
    assert run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default"], fly=fly) == 0
    summary = json.loads((out / "summary.json").read_text())
    drawn = summary["drawn_seeds"]
    assert len(drawn) == 2 and len(set(drawn)) == 2
    assert flown == ["default"] + [f"random-{s}" for s in drawn]
    assert [r["drawn_at_run_time"] for r in summary["rows"]] == [False, True, True]
    printed = capsys.readouterr().out
    assert "seeds drawn at run time" in printed and all(str(s) in printed for s in drawn)
    md = (out / "summary.md").read_text()
    assert f"| random-{drawn[0]} | {drawn[0]}* |" in md
    # a second run draws other seeds: nobody can tune on them
    run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default"], fly=fly)
    assert json.loads((out / "summary.json").read_text())["drawn_seeds"] != drawn


def test_a_modelled_coral_reaches_every_mission_and_the_summary(tmp_path: Path, bundle: Path) -> None:
    seen: list[dict] = []

    def fly(scenario: Path, out: Path, b: Path, speed: float, log_level: str, **modelled) -> dict:
        seen.append(modelled)
        return {**GOOD, "backend": "modelled edgetpu usb3 x2 replicas (...)", "tiles_offered": 1200,
                "tiles_classified": 700}

    out = tmp_path / "missions"
    run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default", "--drawn", "0",
         "--edgetpu-model", "usb3", "--tpus", "2", "--model-cost", "resnet50", "--tile-choice", "all"], fly=fly)
    assert seen == [{"edgetpu_model": "usb3", "tpus": 2, "tpu_layout": "replicas", "model_cost": "resnet50",
                     "tile_choice": "all"}]
    md = (out / "summary.md").read_text()
    assert "modelled Coral usb3 x2 (replicas)" in md and "| 700/1200 | modelled edgetpu usb3 x2" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["edgetpu_model"] == {"model": "usb3", "tpus": 2, "layout": "replicas", "model_cost": "resnet50",
                                        "modelled": True}
    assert summary["tile_choice"] == "all"


def test_a_recorded_flight_is_named_with_its_tlog(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("x", encoding="utf-8")
    tlog = tmp_path / "f.tlog"
    tlog.write_bytes(b"\0")
    assert resolve_scenarios([f"rec={scenario}:{tlog}", f"plain={scenario}"], tmp_path) == [
        ("rec", scenario, tlog), ("plain", scenario, None)]
    with pytest.raises(MissionsError, match="no telemetry log"):
        resolve_scenarios([f"rec={scenario}:{tmp_path / 'missing.tlog'}"], tmp_path)
    # a colon that does not follow a scenario YAML is part of the path, not a tlog
    with pytest.raises(MissionsError, match="no file"):
        resolve_scenarios([f"odd={tmp_path / 'a:b.yaml'}"], tmp_path)


def test_recorded_flies_each_recorded_scenario_with_its_tlog(tmp_path: Path, bundle: Path) -> None:
    flown: dict[str, tuple[Path, Path | None]] = {}

    def fly(scenario: Path, out: Path, b: Path, speed: float, log_level: str, tlog: Path | None = None,
            **_kw) -> dict:
        flown[out.name] = (scenario, tlog)
        return GOOD

    out = tmp_path / "m"
    # `make missions-recorded`: no scripted scenario, no drawn seed, only the recorded flights
    assert run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "--recorded", "--drawn", "0"],
               fly=fly) == 0
    assert flown == {name: (s, t) for name, (s, t) in RECORDED_SCENARIOS.items()}
    assert all(t is not None and t.suffix == ".tlog" for _, t in flown.values())
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert {r["scenario"]: r["tlog"] for r in rows} == {n: str(t) for n, (_, t) in RECORDED_SCENARIOS.items()}
    # beside the scripted ones, each flown without a tlog
    flown.clear()
    assert run(["--bundle", str(bundle), "--out", str(out), "--scenarios", "default", "--recorded",
                "--drawn", "0"], fly=fly) == 0
    assert flown["default"][1] is None and set(flown) == {"default", *RECORDED_SCENARIOS}


def test_fly_mission_hands_the_tlog_to_the_mission_plan(tmp_path: Path, monkeypatch) -> None:
    import tools.mission.run as mission_run
    from tools.missions import fly_mission

    plans: list = []
    monkeypatch.setattr(mission_run, "run_mission", lambda plan: plans.append(plan) or GOOD)
    tlog = tmp_path / "f.tlog"
    assert fly_mission(tmp_path / "s.yaml", tmp_path / "o", tmp_path / "b", 1.0, "INFO", tlog=tlog) == GOOD
    assert plans[0].tlog == tlog and plans[0].scenario == tmp_path / "s.yaml"
