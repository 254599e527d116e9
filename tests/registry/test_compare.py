"""``codec compare``: the planner, the runner (real builds on tiny images), resume and --jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from codec_lab.corelib.errors import ConfigError, UnknownComponentError
from codec_lab.corelib.report import write_report
from codec_lab.registry.compare_plan import BaselineJob, BuildJob, make_plan, parse_sweeps
from codec_lab.registry.compare_run import assemble_curves, run_plan
from codec_lab.registry.components import Registry
from tests.cli.conftest import codec_command

# Every build: 2 steps on 48-px crops, a 2-step coder stage; nothing else is shrunk, so the
# same flags work for every rate strategy.
TINY = {"train": {"steps": 2, "batch_size": 2, "crop": 48, "device": "cpu", "coder_steps": 2}}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def _plan(registry: Registry, out: Path, data_dirs: dict[str, Path], **kw):
    data = {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])}
    return make_plan(registry, out=out, data=data, sets=TINY, n_images=2, **kw)


# ---------------------------------------------------------------- planner


def test_default_sweep_is_the_rates_declared_one(registry: Registry, tmp_path: Path, data_dirs) -> None:
    plan = _plan(registry, tmp_path, data_dirs, rates=["admm"], baselines=["jpeg"])
    builds = [j for j in plan.jobs if isinstance(j, BuildJob)]
    declared = registry.get("rate", "admm").cls.sweep["keep"]
    assert [j.setting["model.rate.keep"] for j in builds] == list(declared)
    assert all(j.config["model"]["rate"]["keep"] == j.setting["model.rate.keep"] for j in builds)
    assert all(j.run_dir.parent == tmp_path / "runs" for j in builds)
    assert [c.key for c in plan.curves] == ["admm", "jpeg"]


def test_sweeps_parse_and_multiply(registry: Registry, tmp_path: Path, data_dirs) -> None:
    sweeps = parse_sweeps(["admm:keep=0.1,0.2", "admm:model.encoder.latent_channels=8,16"])
    assert sweeps == {"admm": {"model.rate.keep": [0.1, 0.2], "model.encoder.latent_channels": [8, 16]}}
    plan = _plan(registry, tmp_path, data_dirs, rates=["admm"], sweeps=sweeps, anchor="admm")
    settings = [dict(j.setting) for j in plan.jobs]
    assert len(settings) == 4 and len({json.dumps(s, sort_keys=True) for s in settings}) == 4
    assert {j.config["model"]["encoder"]["latent_channels"] for j in plan.jobs} == {8, 16}


@pytest.mark.parametrize("bad", ["admm", "admm:keep", "admm:=1", ":keep=1"])
def test_bad_sweep_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="RATE:KEY=V1,V2"):
        parse_sweeps([bad])


def test_names_are_checked_before_any_work(registry: Registry, tmp_path: Path, data_dirs) -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'admm'"):
        _plan(registry, tmp_path, data_dirs, rates=["adm"])
    with pytest.raises(UnknownComponentError, match="did you mean 'jpeg'"):
        _plan(registry, tmp_path, data_dirs, baselines=["jpg"])
    with pytest.raises(ConfigError, match="unknown reference"):
        _plan(registry, tmp_path, data_dirs, baselines=["jpeg"], references=["cwik"])
    with pytest.raises(ConfigError, match="not a curve"):
        _plan(registry, tmp_path, data_dirs, rates=["admm"], anchor="webpp")
    # A swept value out of range fails at planning, not after hours of training.
    with pytest.raises(ConfigError, match="keep"):
        _plan(registry, tmp_path, data_dirs, rates=["admm"], sweeps={"admm": {"model.rate.keep": [1.5]}},
              anchor="admm")  # fmt: skip
    with pytest.raises(ConfigError, match="not compared"):
        _plan(registry, tmp_path, data_dirs, rates=["admm"],
              sweeps={"importance": {"model.rate.threshold": [1]}})


def test_a_coder_that_cannot_code_a_strategy_is_skipped_with_the_reason(
    registry: Registry, tmp_path: Path, data_dirs
) -> None:
    plan = _plan(registry, tmp_path, data_dirs, rates=["admm", "entropy"], coders=["cabac"],
                 sweeps={"admm": {"model.rate.keep": [0.2]}, "entropy": {"model.rate.weight": [100]}},
                 anchor="admm")  # fmt: skip
    keys = {c.key for c in plan.curves}
    assert "admm+cabac" in keys and "entropy+cabac" not in keys
    assert any("cabac" in n and "entropy" in n and "finite alphabet" in n for n in plan.notices)


def test_the_anchor_baseline_is_added(registry: Registry, tmp_path: Path, data_dirs) -> None:
    plan = _plan(registry, tmp_path, data_dirs, rates=["admm"], sweeps={"admm": {"model.rate.keep": [0.2]}})
    assert any(isinstance(j, BaselineJob) and j.baseline == "jpeg" for j in plan.jobs)
    assert any("anchor" in n for n in plan.notices)


# ---------------------------------------------------------------- runner and report


def _numbers(out: Path) -> dict[str, list[tuple]]:
    """Per point, the per-image numbers that must not depend on --jobs (not the times)."""
    res = {}
    for f in sorted((out / "points").glob("*.json")):
        doc = json.loads(f.read_text())
        res[f.stem] = [(r["image"], r["bytes"], r["psnr"], r.get("ms-ssim")) for r in doc["per_image"]]
    return res


@pytest.fixture(scope="module")
def tiny_compare(registry: Registry, tmp_path_factory: pytest.TempPathFactory, data_dirs) -> tuple:
    """Two strategies × two points, a coder variant, JPEG and a published reference, --jobs 2."""
    out = tmp_path_factory.mktemp("cmp") / "report"
    plan = _plan(registry, out, data_dirs, rates=["admm", "importance"], coders=["cabac"],
                 baselines=["jpeg"], references=["cwic"],
                 sweeps={"admm": {"model.rate.keep": [0.1, 0.4]},
                         "importance": {"model.rate.threshold": [0.3, 0.7]}})  # fmt: skip
    outcome = run_plan(plan, out, jobs=2, threads=1)
    return plan, out, outcome


def test_tiny_compare_measures_every_point_with_real_files(tiny_compare) -> None:
    plan, out, outcome = tiny_compare
    assert not outcome.failed, outcome.failed
    expected = {k for j in plan.jobs for k in plan.point_keys(j)}
    assert set(outcome.points) == expected
    assert {"admm-keep=0.1", "admm-keep=0.1+cabac", "importance-threshold=0.7", "jpeg-quality=40"} <= expected
    for key in ("admm-keep=0.1", "admm-keep=0.1+cabac"):
        p = outcome.points[key]
        assert p.run and (Path(p.run) / "weights.safetensors").is_file()
        for row in p.results.rows:  # bpp is a file's size
            assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (row["height"] * row["width"]))
        assert p.train_s is not None and p.threads == 1
    # The coder variant codes the same transform: same quality, its own bits.
    a, b = outcome.points["admm-keep=0.1"].results, outcome.points["admm-keep=0.1+cabac"].results
    assert [r["psnr"] for r in a.rows] == [r["psnr"] for r in b.rows]
    # ADMM declares zero fractions before and after pruning; pruning only adds zeros.
    for r in a.rows:
        assert r["zeros"] >= r["zeros_before"]


def test_report_holds_every_artefact(tiny_compare, tmp_path: Path) -> None:
    plan, out, outcome = tiny_compare
    curves = assemble_curves(plan, outcome.points)
    assert {c.key for c in curves} >= {"admm", "admm+cabac", "importance", "jpeg", "cwic-mse", "cwic-msssim"}
    written = write_report(curves, out, "jpeg", "pchip", title="tiny", command="codec compare …")
    for name in ("rd_psnr.png", "rd_msssim.png", "report.md", "report.html", "curves/admm.json",
                 "curves/jpeg.json", "curves/cwic-mse.json"):  # fmt: skip
        assert (out / name).is_file() and name in written, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "BD-rate" in md and "pchip over" in md  # the method and interval beside a number
    assert "test has 2 distinct points (at least 4 needed)" in md  # two-point curves: no number, and why
    assert "95% CI" in md and "zeros before" in md and "zeros after" in md
    assert "published" in md and "not a file size" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # self-contained: plots inlined
    assert "<table>" in html and "BD-rate" in html
    # compressai.utils.plot reads our curve files.
    from compressai.utils.plot.__main__ import parse_json_file

    for key in ("admm", "jpeg", "cwic-mse"):
        parsed = parse_json_file(out / "curves" / f"{key}.json", "psnr")
        assert len(parsed["xs"]) == len(parsed["ys"]) >= 2
        assert parsed["xs"] == sorted(parsed["xs"])


def test_jobs_do_not_change_the_numbers(registry: Registry, tiny_compare, tmp_path: Path, data_dirs) -> None:
    plan2, out2, _ = tiny_compare
    out1 = tmp_path / "serial"
    plan = _plan(registry, out1, data_dirs, rates=["admm"], baselines=["jpeg"],
                 sweeps={"admm": {"model.rate.keep": [0.1, 0.4]}})  # fmt: skip
    outcome = run_plan(plan, out1, jobs=1, threads=1)
    assert not outcome.failed
    serial, parallel = _numbers(out1), _numbers(out2)
    for key in serial:
        assert serial[key] == parallel[key], key


def test_a_rerun_skips_finished_points(registry: Registry, tiny_compare, data_dirs) -> None:
    plan, out, _ = tiny_compare
    target = out / "points" / "admm-keep=0.4.json"
    stamps = {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json") if f != target}
    target.unlink()
    events = []

    class Record:
        def overall(self, total: int, done: int) -> None:
            events.append(("overall", total, done))

        def job_event(self, job: str, event: str, payload) -> None:
            events.append((job, event))

    outcome = run_plan(plan, out, jobs=1, threads=1, progress=Record())
    assert target.is_file() and not outcome.failed
    assert events[0] == ("overall", len(stamps) + 1, len(stamps))
    assert [e for e in events if e[1] == "point"] == [("admm-keep=0.4", "point")]
    assert {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json") if f != target} == stamps


def test_a_build_with_other_flags_is_trained_and_its_variants_refitted_again(
    registry: Registry, tmp_path: Path, data_dirs
) -> None:
    """A rerun with other build flags (here --steps) must not keep points the printed command
    did not make: the build is trained again, its coder variant refitted from the new weights."""
    out = tmp_path / "cmp"

    def run(steps: int) -> list[str]:
        measured: list[str] = []

        class Record:
            def overall(self, total: int, done: int) -> None:
                pass

            def job_event(self, job: str, event: str, payload) -> None:
                if event == "point":
                    measured.append(job)

        sets = {"train": {**TINY["train"], "steps": steps}}
        data = {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])}
        plan = make_plan(registry, out=out, data=data, sets=sets, n_images=2, rates=["admm"],
                         coders=["cabac"], baselines=["jpeg"], sweeps={"admm": {"model.rate.keep": [0.2]}})
        outcome = run_plan(plan, out, jobs=1, threads=1, progress=Record())
        assert not outcome.failed, outcome.failed
        return sorted(measured)

    first = run(2)
    assert {"admm-keep=0.2", "admm-keep=0.2+cabac"} <= set(first)
    assert run(2) == []  # the same command: everything is kept
    assert run(3) == ["admm-keep=0.2", "admm-keep=0.2+cabac"]  # jpeg's points are kept
    info = json.loads((out / "runs" / "admm-keep=0.2" / "run.json").read_text())
    refit = json.loads((out / "runs" / "admm-keep=0.2+cabac" / "run.json").read_text())
    assert refit["refitted_from_digest"] == info["weights_digest"]
    variant = json.loads((out / "points" / "admm-keep=0.2+cabac.json").read_text())["compare"]
    assert variant["setting"] == {"model.rate.keep": 0.2, "coder": "cabac"}  # which sweep point


def test_a_killed_compare_resumes(tmp_path: Path, data_dirs) -> None:
    out = tmp_path / "cmp"
    cmd = [*codec_command(), "compare", "--rate", "admm", "--sweep", "admm:keep=0.1,0.2,0.4",
           "--data", str(data_dirs["train"]), "--eval", str(data_dirs["val"]), "--out", str(out),
           "--jobs", "1", "--steps", "2", "--set", "train.batch_size=2", "--set", "train.crop=48",
           "--set", "train.device=cpu"]  # fmt: skip
    env = {**os.environ, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    first = out / "points" / "admm-keep=0.1.json"
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.is_file(), "no point was measured"
    os.kill(proc.pid, signal.SIGKILL)  # the compare only: its workers must notice and stop
    proc.wait()
    time.sleep(2)
    left = sorted(f.name for f in (out / "points").glob("*.json"))
    time.sleep(8)  # an orphaned worker would go on and save its next point
    assert sorted(f.name for f in (out / "points").glob("*.json")) == left
    stamp = first.stat().st_mtime_ns
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "already measured" in done.stderr
    assert first.stat().st_mtime_ns == stamp
    assert {f.stem for f in (out / "points").glob("*.json")} >= {"admm-keep=0.1", "admm-keep=0.2",
                                                                  "admm-keep=0.4"}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


def test_trained_runs_and_coder_variants_join_the_comparison(
    registry: Registry, trained_run: Path, tmp_path: Path, data_dirs
) -> None:
    out = tmp_path / "runs-cmp"
    plan = _plan(registry, out, data_dirs, runs=[trained_run], coders=["cabac"], baselines=["jpeg"])
    run_job = next(j for j in plan.jobs if not isinstance(j, BaselineJob))
    assert plan.point_keys(run_job) == ["run-tiny", "run-tiny+cabac"]
    outcome = run_plan(plan, out, jobs=2, threads=1)
    assert not outcome.failed, outcome.failed
    own, refit = outcome.points["run-tiny"], outcome.points["run-tiny+cabac"]
    assert own.run == str(trained_run) and own.train_s is None  # measured, not trained here
    assert Path(refit.run).parent == out / "runs" and refit.setting == {"coder": "cabac"}  # no sweep
    assert [r["psnr"] for r in own.results.rows] == [r["psnr"] for r in refit.results.rows]
    assert (trained_run / "weights.safetensors").is_file()  # the user's run is only read
    curves = {c.key for c in assemble_curves(plan, outcome.points)}
    assert {"run-cae-admm-histogram", "run-cae-admm-histogram+cabac", "jpeg"} <= curves
