"""``codec compare``: rate strategies, coders and classical codecs side by side, with a report."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

import codec_lab
from codec_lab.cli import _state
from codec_lab.cli._output import err, handle_errors, out
from codec_lab.corelib.config import load_yaml, parse_sets
from codec_lab.corelib.data import validation_images
from codec_lab.corelib.errors import ConfigError, OutputError, RunError
from codec_lab.corelib.report import write_report
from codec_lab.registry.compare_plan import BaselineJob, BuildJob, Plan, make_plan, parse_sweeps
from codec_lab.registry.compare_run import assemble_curves, run_plan
from codec_lab.registry.components import Registry
from codec_lab.registry.shipped_models import resolve

# What a compare folder may hold: resuming or --force never touches anything else.
_OURS = {"points", "runs", "curves", "report.md", "report.html", "rd_psnr.png", "rd_msssim.png",
         "command.txt"}  # fmt: skip


class _Bars:
    """Overall and per-job progress: live bars on a terminal, plain lines in a log."""

    def __init__(self) -> None:
        self.live = err.is_terminal
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err)  # fmt: skip
        self.total: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        if self.live:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.bar.stop()

    def overall(self, total: int, done: int) -> None:
        if self.live:
            self.total = self.bar.add_task("points", total=total, completed=done, info="")
        err.print(f"compare: {total} point(s), {done} already measured", highlight=False)

    def job_event(self, job: str, event: str, payload: Mapping[str, Any]) -> None:
        if event == "point":
            if self.live and self.total is not None:
                self.bar.advance(self.total)
            self._line(f"{payload['key']}: measured")
        elif event == "failed":
            self._line(f"{job}: FAILED: {str(payload['error']).splitlines()[0]}")
        elif event == "start":
            if self.live:
                if job in self.tasks:
                    self.bar.remove_task(self.tasks[job])
                self.tasks[job] = self.bar.add_task(f"{job}: {payload['task']}", total=payload["total"],
                                                    info="")  # fmt: skip
            else:
                self._line(f"{job}: {payload['task']} ({payload['total']})")
        elif event == "advance" and self.live and job in self.tasks:
            info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in payload.get("fields", {}).items())  # fmt: skip
            self.bar.update(self.tasks[job], advance=payload["n"], info=info)
        elif event == "message":
            self._line(f"{job}: {payload['text']}")
        elif event == "stop" and self.live and job in self.tasks:
            self.bar.remove_task(self.tasks.pop(job))

    def _line(self, text: str) -> None:
        (self.bar.console if self.live else err).print(text, highlight=False)


def _check_out(folder: Path, force: bool) -> None:
    """A compare folder is created, resumed, or (``--force``) cleared; never anything else."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file", "give a folder for the report")
    if not folder.exists():
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in _OURS and not p.name.startswith("."))
    if foreign:
        raise OutputError(f"--out {folder} holds files a compare did not write ({', '.join(foreign[:3])})",
                          "choose an empty or new folder for the report")  # fmt: skip
    if force:
        import shutil

        for name in _OURS:
            p = folder / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def _print_plan(plan: Plan, jobs: int) -> None:
    table = Table(title="codec compare: plan")
    for h in ("job", "curve", "what", "points", "est. time"):
        table.add_column(h, justify="right" if h in ("points", "est. time") else "left")
    for j in plan.jobs:
        if isinstance(j, BuildJob):
            t = j.config["train"]
            steps = t.get("steps") or t["epochs"] * (t.get("steps_per_epoch") or 0)
            what = f"build ({j.config['preset']}, {steps} steps) "
            what += ", ".join(f"{k}={v}" for k, v in j.setting.items())
            what += "".join(f" + fit-coder {v.coder}" for v in j.variants)
        elif isinstance(j, BaselineJob):
            what = f"{j.baseline} at " + ", ".join(f"{s:g}" for _, s in j.settings)
        else:
            what = f"evaluate {j.run_dir}" + "".join(f" + fit-coder {v.coder}" for v in j.variants)
        table.add_row(j.key, j.curve, what, str(len(plan.point_keys(j))), f"{j.estimate_s / 60:.1f} min")
    out.print(table)
    total = plan.estimate_s()
    out.print(f"{len(plan.jobs)} job(s), {sum(len(plan.point_keys(j)) for j in plan.jobs)} point(s); "
              f"estimated {total / 60:.0f} min one after another, about {total / 60 / max(1, jobs):.0f} min "
              f"with --jobs {jobs} (from the step times each preset records: measured at 2 threads on a "
              "2-core CPU for quick and cpu, a guess for paper)",
              highlight=False)  # fmt: skip
    for n in plan.notices:
        out.print(f"Notice: {n}", highlight=False)


@handle_errors
def compare(
    rate: Annotated[list[str] | None, typer.Option(
        "--rate", help="Rate strategy to build and sweep (repeatable): admm, importance, entropy, …")] = None,
    run: Annotated[list[str] | None, typer.Option(
        "--run", help="A trained run folder, or a shipped model (`codec models`), to add as a point "
                      "(repeatable).")] = None,
    coder: Annotated[list[str] | None, typer.Option(
        "--coder", help="Also fit this coder on every trained transform (fit-coder) and compare it "
                        "(repeatable).")] = None,
    baseline: Annotated[list[str] | None, typer.Option(
        "--baseline", help="Classical codec swept over its quality range (repeatable): jpeg, webp, "
                           "jpeg2000, avif, …")] = None,
    reference: Annotated[list[str] | None, typer.Option(
        "--reference", help="Published Kodak curve drawn dashed (repeatable): compressai-factorized, "
                            "cwic.")] = None,
    anchor: Annotated[str, typer.Option(help="Curve the BD-rate is measured against.")] = "jpeg",
    method: Annotated[str, typer.Option(help="BD interpolation: pchip or akima.")] = "pchip",
    sweep: Annotated[list[str] | None, typer.Option(
        "--sweep", help="A rate's sweep instead of its default: RATE:KEY=V1,V2,… (repeatable; several "
                        "keys of one rate are swept as their product).")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Folder of training images (default: the built-in samples).")] = None,
    eval_dir: Annotated[Path | None, typer.Option(
        "--eval", help="Folder of images every point is measured on (default: held-out samples).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Report folder (default: reports/compare-<time>); rerun into it to resume.")] = None,
    preset: Annotated[str | None, typer.Option(help="Build preset: quick, cpu, paper.")] = None,
    steps: Annotated[int | None, typer.Option(help="Cap the optimizer steps of every build.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config applied to every build.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key of every build: --set train.lr=0.001 (repeatable).")] = None,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Points worked on at once, each in its own process (default: CPU cores).")] = None,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (builds, points, estimated time); do nothing.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Measure every point again (clears an earlier compare in --out).")] = False,
) -> None:
    """Build each rate strategy over its rate knob, measure every point with real files, and
    write a report: RD plots, BD-rate against an anchor, per-point numbers, speed.

    Every job runs in its own process on one CPU thread (or --threads), so --jobs changes
    the wall time, not the numbers. Run the same command again to resume an interrupted
    compare: measured points are kept.

    Examples:
      codec compare --rate admm --rate importance --baseline jpeg --baseline webp --out reports/cmp1
      codec compare --rate admm --rate importance --rate entropy --preset cpu \\
          --data ../shared/data/bsds500/train --eval ../shared/data/kodak \\
          --baseline jpeg --baseline webp --baseline jpeg2000 --baseline avif \\
          --reference compressai-factorized --reference cwic --out reports/cmp1
      codec compare --run runs/admm1 --coder cabac --coder inclined-tcae --baseline jpeg --out reports/coders
    """
    if method not in ("pchip", "akima"):
        raise ConfigError(f"--method {method!r}: unknown", "valid: pchip, akima")
    registry = Registry()
    folder = out_dir or Path("reports") / f"compare-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    images = validation_images(eval_dir)
    train_over = {"steps": steps} if steps is not None else {}
    data_over = {k: str(v) for k, v in {"train": data, "val": eval_dir}.items() if v is not None}
    plan = make_plan(
        registry, out=folder, rates=rate or [], runs=[resolve(r, option="--run").path for r in run or []],
        coders=coder or [], baselines=baseline or [], references=reference or [], anchor=anchor,
        sweeps=parse_sweeps(sweep or []), preset=preset, config=load_yaml(config) if config else None,
        train=train_over, data=data_over, sets=parse_sets(set_ or []), n_images=len(images),
    )  # fmt: skip
    n_jobs = jobs or max(1, min(os.cpu_count() or 1, len(plan.jobs)))
    threads = _state.threads or 1
    if dry_run:
        _print_plan(plan, n_jobs)
        return
    _check_out(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    command = "codec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    (folder / "command.txt").write_text(command + "\n")
    for n in plan.notices:
        err.print(f"Notice: {n}", highlight=False)
    err.print(f"Comparing {len(plan.jobs)} job(s) on {len(images)} image(s), {n_jobs} at once, "
              f"{threads} thread(s) each → {folder}", highlight=False)  # fmt: skip
    with _Bars() as bars:
        outcome = run_plan(plan, folder, jobs=n_jobs, threads=threads, progress=bars)
    curves = assemble_curves(plan, outcome.points)
    if not any(c.key == plan.anchor for c in curves):
        raise RunError(f"the anchor {plan.anchor!r} has no measured point", "see the failures above")
    where = str(eval_dir) if eval_dir else "the held-out samples"
    facts = [f"{len(images)} image(s) from {where}", f"codec-lab {codec_lab.__version__}",
             f"{platform.machine()} CPU, {os.cpu_count()} core(s); {n_jobs} job(s) at once, {threads} "
             "thread(s) each", f"made {_dt.date.today().isoformat()}"]  # fmt: skip
    kodak = {f"kodim{i:02d}.png" for i in range(1, 25)}
    if any(c.kind == "published" for c in curves) and {p.name for p in images} != kodak:
        facts.append("the published curves are means over the 24 Kodak images, the points here are "
                     "measured on other images: compare their shapes, not their values")
    if outcome.resumed:
        facts.append(f"{len(outcome.resumed)} point(s) resumed from an earlier run of this command")
    written = write_report(curves, folder, plan.anchor, method,  # type: ignore[arg-type]
                           title=title or "codec compare", command=command, facts=facts)  # fmt: skip
    out.print(f"Report: {folder / 'report.md'} and {folder / 'report.html'}; plots "
              f"{', '.join(str(folder / n) for n in written if n.endswith('.png'))}; one JSON per curve "
              f"(CompressAI's schema) in {folder / 'curves'}", highlight=False)  # fmt: skip
    if outcome.failed:
        for key, error in outcome.failed.items():
            err.print(f"Error: point {key} failed: {error.splitlines()[0]}", highlight=False)
        raise RunError(f"{len(outcome.failed)} job(s) failed; the report shows the others",
                       "fix the cause and run the same command again: measured points are kept")  # fmt: skip
