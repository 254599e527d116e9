"""Running a ``codec compare`` plan: jobs in worker processes, points saved as they finish.

Every job runs in a fresh worker process (``--jobs N`` of them at once) on a fixed number of
CPU threads, so the numbers do not depend on N. A point's JSON is written atomically when it
is measured; a rerun of the same command skips every point whose file is there and still
matches the plan (a build of the same config, the same evaluation images, a coder variant
refitted from its source's present weights), so a killed compare resumes.
Workers report progress through a queue; the parent turns it into calls on a
:class:`CompareProgress`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any, Protocol

from codec_lab.corelib.classical import evaluate_classical
from codec_lab.corelib.comparison import Curve, Point
from codec_lab.corelib.data import validation_images
from codec_lab.corelib.errors import CodecError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.published import published
from codec_lab.corelib.results import Results
from codec_lab.corelib.runs import config_matches, run_record, run_state, write_json
from codec_lab.registry.compare_plan import BaselineJob, BuildJob, CoderVariant, Job, Plan

__all__ = ["CompareProgress", "Outcome", "load_points", "run_plan"]


class CompareProgress(Protocol):
    """What the runner reports (the CLI draws it; tests may record it)."""

    def overall(self, total: int, done: int) -> None:
        """``total`` points planned, ``done`` of them already measured (resumed)."""

    def job_event(self, job: str, event: str, payload: Mapping[str, Any]) -> None:
        """A job's progress: ``start`` (task, total), ``advance`` (n, fields), ``message``
        (text), ``stop``; ``point`` (key) when a point is saved; ``failed`` (error)."""


@dataclass
class Outcome:
    """What a run of the plan achieved."""

    points: dict[str, Point] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)


class _QueueProgress:
    """A worker's ``corelib.progress.Progress`` that forwards to the parent's queue."""

    def __init__(self, q: Any, job: str) -> None:
        self.q, self.job = q, job

    def start(self, task: str, total: int) -> None:
        self.q.put((self.job, "start", {"task": task, "total": total}))

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.q.put((self.job, "advance", {"n": n, "fields": {k: v for k, v in fields.items()
                                                              if isinstance(v, (int, float, str))}}))

    def message(self, text: str) -> None:
        self.q.put((self.job, "message", {"text": text}))

    def stop(self) -> None:
        self.q.put((self.job, "stop", {}))


# ---------------------------------------------------------------- resume


def _image_names(eval_dir: Path | None) -> list[str]:
    return [p.name for p in validation_images(eval_dir)]


def _point_file(out: Path, key: str) -> Path:
    return out / "points" / f"{key}.json"


def load_points(out: Path, plan: Plan, images: Sequence[str]) -> dict[str, Point]:
    """The points already measured in ``out`` that still match ``plan`` (a point of another
    build config, other images or a stale coder variant is measured again)."""
    found: dict[str, Point] = {}
    settings = {j.key: dict(j.setting) for j in plan.jobs if isinstance(j, BuildJob)}
    for job in plan.jobs:
        # A build made with other flags (--steps, --set, --preset, …) is trained again, and a
        # coder variant refitted from another source's weights is refitted: so are their points.
        if isinstance(job, BuildJob) and not _complete_run(job.run_dir, job.config):
            continue
        variants = {v.key: v for v in getattr(job, "variants", ())}
        for key in plan.point_keys(job):
            f = _point_file(out, key)
            if not f.is_file() or (key in variants and not _current_variant(variants[key], job.run_dir)):
                continue
            try:
                p = Point.from_json(json.loads(f.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged point file is measured again
            same_images = [r.get("image") for r in p.results.rows] == list(images)
            if isinstance(job, BuildJob) and key == job.key and dict(p.setting) != settings[job.key]:
                continue
            if same_images:
                found[key] = p
    return found


def _complete_run(run_dir: Path, config: Mapping[str, Any] | None) -> bool:
    """Whether ``run_dir`` holds a finished run (of ``config``, when given)."""
    if not ((run_dir / "weights.safetensors").is_file() and (run_dir / "run.json").is_file()):
        return False
    return config is None or config_matches(run_dir, dict(config))


def _current_variant(variant: CoderVariant, source: Path) -> bool:
    """Whether ``variant``'s run is a finished refit of ``source``'s present weights."""
    if not _complete_run(variant.run_dir, None):
        return False
    made_from = run_record(variant.run_dir).get("refitted_from_digest")
    return made_from is not None and made_from == run_record(source).get("weights_digest")


def _resumable(run_dir: Path, config: Mapping[str, Any]) -> bool:
    """Whether ``run_dir`` holds an unfinished build of ``config`` (one ``--resume`` continues)."""
    return run_state(run_dir).status == "interrupted" and config_matches(run_dir, dict(config))


# ---------------------------------------------------------------- worker side


def _save(out: Path, point: Point, q: Any) -> None:
    write_json(_point_file(out, point.key), point.to_json(), overwrite=True)
    q.put((point.key, "point", {"key": point.key}))


def _train_seconds(run_dir: Path) -> float | None:
    info = json.loads((run_dir / "run.json").read_text())
    vals = [info.get(k) for k in ("train_seconds", "fit_seconds")]
    return float(sum(v for v in vals if isinstance(v, (int, float)))) if any(vals) else None


def _variant(variant: CoderVariant, source: Path, eval_dir: Path | None, images: list[Path], out: Path,
             threads: int, q: Any, setting: Mapping[str, Any]) -> None:  # fmt: skip
    from codec_lab.registry.fit_coder import refit_run
    from codec_lab.registry.runs import load_run

    progress = _QueueProgress(q, variant.key)
    if _current_variant(variant, source):
        results = evaluate(load_run(variant.run_dir), images, progress)
    else:
        results = refit_run(source, coder=variant.coder, out=variant.run_dir, val=eval_dir,
                            progress=progress, overwrite=True).evaluation  # fmt: skip
    # The source's sweep setting too: a row must say which point of the sweep it recodes.
    _save(out, Point(variant.key, variant.curve, {**setting, "coder": variant.coder},
                     _named(results, variant.key), _train_seconds(variant.run_dir), str(variant.run_dir),
                     threads), q)  # fmt: skip


def _named(results: Results, name: str) -> Results:
    from dataclasses import replace

    results.codec = replace(results.codec, name=name)
    return results


def _work(job: Job, out: Path, eval_dir: Path | None, todo: Sequence[str], threads: int, q: Any) -> None:
    """Do one job in a worker process: the points of it named in ``todo``."""
    from codec_lab.corelib.devices import set_threads
    from codec_lab.registry.components import Registry
    from codec_lab.registry.runs import load_run, resume_run, train_run

    set_threads(threads)
    images = validation_images(eval_dir)
    progress = _QueueProgress(q, job.key)
    if isinstance(job, BaselineJob):
        baseline = Registry().baseline(job.baseline)
        for key, setting in job.settings:
            if key in todo:
                res = _named(evaluate_classical(baseline, images, setting=setting, progress=progress), key)
                _save(out, Point(key, job.curve, {baseline.setting.key: setting}, res, threads=threads), q)
        return
    if isinstance(job, BuildJob):
        source = job.run_dir
        if job.key in todo or any(not _current_variant(v, source) for v in job.variants):
            if _complete_run(source, job.config):
                results = evaluate(load_run(source), images, progress) if job.key in todo else None
            elif _resumable(source, job.config):
                # A build a killed compare left unfinished continues from its checkpoint.
                _, _, results = resume_run(source, progress=progress)
            else:
                # Any other run folder in the compare's own folder is ours: it is trained again.
                _, _, results = train_run(dict(job.config), source, progress=progress, overwrite=True)
            if results is not None and job.key in todo:
                _save(out, Point(job.key, job.curve, dict(job.setting), _named(results, job.key),
                                 _train_seconds(source), str(source), threads), q)  # fmt: skip
    else:
        source = job.run_dir
        if job.key in todo:
            results = evaluate(load_run(source), images, progress)
            _save(out, Point(job.key, job.curve, {"run": str(source)}, _named(results, job.key), None,
                             str(source), threads), q)  # fmt: skip
    for v in job.variants:
        if v.key in todo:
            _variant(v, source, eval_dir, images, out, threads, q,
                     dict(job.setting) if isinstance(job, BuildJob) else {})


def _guarded(
    job: Job, out: Path, eval_dir: Path | None, todo: Sequence[str], threads: int, q: Any
) -> str | None:
    """:func:`_work`, returning an error text instead of raising (a worker never dies silently)."""

    try:
        _work(job, out, eval_dir, todo, threads, q)
    except CodecError as e:
        return e.message + (f" ({e.hint})" if e.hint else "")
    except Exception as e:  # a failed point is reported; the other points go on
        return f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
    return None


def _follow_parent(parent: int) -> None:
    """Worker initializer: exit when the compare that started this worker is gone (killed, even
    by SIGKILL), so no orphan keeps training and writing into the report folder."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


# ---------------------------------------------------------------- parent side


def run_plan(
    plan: Plan,
    out: Path,
    *,
    jobs: int = 1,
    threads: int = 1,
    progress: CompareProgress | None = None,
    stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Do every job of ``plan`` not finished in ``out``; return all points (resumed and new).

    Args:
        plan: the plan.
        out: the report folder (points under ``out/points``, runs under ``out/runs``).
        jobs: worker processes at once.
        threads: CPU threads of each worker (the same for any ``jobs``: equal numbers).
        progress: receives progress.
        stop: polled between jobs; True stops submitting new ones.
    """
    images = _image_names(plan.eval_dir)
    outcome = Outcome()
    done = load_points(out, plan, images)
    outcome.points.update(done)
    outcome.resumed = sorted(done)
    total = sum(len(plan.point_keys(j)) for j in plan.jobs)
    if progress is not None:
        progress.overall(total, len(done))
    pending = [(j, [k for k in plan.point_keys(j) if k not in done]) for j in plan.jobs]
    pending = [(j, todo) for j, todo in pending if todo]
    if not pending:
        return outcome
    (out / "points").mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, initializer=_follow_parent,
                               initargs=(os.getpid(),))  # fmt: skip
    manager = SyncManager(ctx=ctx)
    manager.start(_follow_parent, (os.getpid(),))
    with manager, pool:
        q = manager.Queue()
        finished = threading.Event()

        def relay() -> None:
            while not finished.is_set() or not q.empty():
                try:
                    job, event, payload = q.get(timeout=0.2)
                except queue_mod.Empty:
                    continue
                except (EOFError, OSError):
                    return
                if progress is not None:
                    progress.job_event(job, event, payload)

        listener = threading.Thread(target=relay, daemon=True)
        listener.start()
        futures: dict[Future[str | None], Job] = {}
        queue_jobs = list(pending)
        try:
            while queue_jobs or futures:
                while queue_jobs and len(futures) < max(1, jobs) and not (stop and stop()):
                    job, todo = queue_jobs.pop(0)
                    futures[pool.submit(_guarded, job, out, plan.eval_dir, todo, threads, q)] = job
                if not futures:
                    break
                ready, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in ready:
                    job = futures.pop(f)
                    error = f.result()
                    if error is not None:
                        outcome.failed[job.key] = error
                        if progress is not None:
                            progress.job_event(job.key, "failed", {"error": error})
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM turned into an exception): stop the running jobs now
            # rather than wait for them; their points were not saved and are done again on rerun.
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            time.sleep(0.3)  # let the relay drain the last events
            finished.set()
            listener.join(timeout=5)
    outcome.points.update(load_points(out, plan, images))
    return outcome


def assemble_curves(plan: Plan, points: Mapping[str, Point]) -> list[Curve]:
    """The plan's curves with their measured points, and the published curves' points."""
    curves = [Curve(c.key, c.label, c.kind, [], c.note) for c in plan.curves]
    by_key = {c.key: c for c in curves}
    for p in points.values():
        if p.curve in by_key:
            by_key[p.curve].points.append(p)
    for c in curves:
        if c.kind != "published":
            continue
        for pc in (x for name in _reference_names(plan) for x in published(name)):
            if pc.key == c.key:
                c.points = [Point(f"{pc.key}-{i}", pc.key, {}, r) for i, r in enumerate(pc.results())]
    return [c for c in curves if c.points]


def _reference_names(plan: Plan) -> list[str]:
    from codec_lab.corelib.published import PUBLISHED

    keys = {c.key for c in plan.curves if c.kind == "published"}
    return [name for name, curves in PUBLISHED.items() if any(pc.key in keys for pc in curves)]
