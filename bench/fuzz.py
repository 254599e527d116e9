"""Fuzzing the decoders: no input may crash, hang or exhaust the machine.

    python -m bench.fuzz [--cases 10000] [--coders histogram,cabac] [--jobs 2] [--seed 0]
                         [--timeout 10] [--max-rss-mb 2048] [--out bench/out/fuzz]

For every built-in coder a tiny codec is built (a few hundred parameters; counted coders
fitted on a sample image, trained ones given random non-zero output layers so decoding runs
through the context network) and saved as a run folder; real images (crops of the shipped
samples, one not a multiple of 8) are compressed with it. Each coder then gets ``--cases``
cases of every mutation kind (:mod:`bench._fuzz_mutate`): ``struct`` (header fields and
payloads changed through ``unpack``/``pack``, trailing CRC recomputed), ``plain`` (bytes of
the whole file), ``plain-crc`` (bytes of the body, CRC recomputed). Case ``i`` is derived from
``(seed, coder, kind, i)`` alone, so any case can be made again.

Cases run in long-lived worker subprocesses (:mod:`bench._fuzz_worker`), one per core, so a
segfault is counted instead of ending the run. Each case must end in a one-line
``CodecError`` ("clean") or decode to exactly the original image ("identical"). Failures:
"wrong" (another image), "unexpected" (any other exception, or a multi-line message),
"crash" (the worker died), "hang" (no answer within ``--timeout`` s: the worker is killed)
and "memory" (the worker's RSS above ``--max-rss-mb``, measured per case by the worker and
watched by this process). A failure's bytes and details go to ``OUT/failures/``; the models
to ``OUT/models/`` (decode a failure with ``codec decompress --model OUT/models/CODER``).
The exit status is 1 when any case failed. ``--inject-faults`` (test-only) runs a fake model
that fails in every way once, to show the harness detects each.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from bench._fuzz_mutate import KINDS, mutate

__all__ = ["CODERS", "FAILURES", "build_corpus", "main", "run_campaign"]

WORKER = Path(__file__).with_name("_fuzz_worker.py")
FAULTS = "!faults"  # the worker's test-only fault model
_CW = {"name": "content-weighted", "width": 0.0625, "latent_channels": 4}
_IMPORTANCE = {"encoder": _CW, "decoder": _CW, "quantizer": {"name": "stochastic", "bound": 7},
               "rate": {"name": "importance", "levels": 4}}  # fmt: skip
_TCAE = {"width": 2, "map_width": 4, "kernel": 3, "out_kernel": 3, "res_blocks": 1}
CODERS: dict[str, dict[str, Any]] = {
    # Two streams (importance map, masked code): masks and the context of an earlier stream.
    "histogram": {**_IMPORTANCE, "coder": {"name": "histogram"}},
    "cabac": {**_IMPORTANCE, "coder": {"name": "cabac"}},
    "tcae": {**_IMPORTANCE, "coder": {"name": "tcae", **_TCAE}},
    "inclined-tcae": {**_IMPORTANCE, "coder": {"name": "inclined-tcae", **_TCAE}},
    "factorized": {"encoder": {"name": "gdn", "channels": 8, "latent_channels": 4},
                   "decoder": {"name": "gdn", "channels": 8}, "quantizer": {"name": "noise"},
                   "rate": {"name": "entropy"}, "coder": {"name": "factorized"}},  # fmt: skip
}
"""The tiny model of each built-in coder, as ``model`` config sections."""
CROPS = [(64, 64), (96, 72), (61, 83)]
"""(h, w) of the original images, one per sample image; 61x83 is not a multiple of 8."""
_START_S = 600.0
"""Longest a worker may take to import torch and load the models."""
FAILURES = ("wrong", "unexpected", "crash", "hang", "memory")
COLUMNS = ("clean", "identical") + FAILURES


# ---------------------------------------------------------------------------- corpus
def build_corpus(out: Path, coders: Sequence[str], seed: int = 0) -> dict[str, list[Path]]:
    """Save each coder's tiny codec as ``out/models/CODER`` and its compressed originals.

    Returns:
        coder -> the original files (``out/models/CODER/orig-I.cdl``).
    """
    import torch
    import yaml

    from codec_lab.corelib.files import encode_image
    from codec_lab.corelib.images import load_image, sample_images
    from codec_lab.corelib.runs import save_weights
    from codec_lab.registry.components import Registry
    from codec_lab.registry.compose import assemble_config, build_codec

    registry = Registry()
    images = [load_image(p)[0] for p in sample_images()[: len(CROPS)]]
    corpus: dict[str, list[Path]] = {}
    for name in coders:
        torch.manual_seed(seed)
        cfg = assemble_config(registry, config={"model": CODERS[name]}, train={"device": "cpu", "seed": seed})
        codec = build_codec(cfg["model"], registry).eval()
        coder = codec.coder
        if coder.fitting == "counted":
            coder.fit_begin()
            coder.fit_observe(codec.streams(images[0][..., :128, :128]))
            coder.fit_end()
        elif coder.fitting == "trained":
            # A fresh output layer predicts uniform exactly (and an unfitted coder skips the
            # network): random weights make decoding run the context network for real.
            gen = torch.Generator().manual_seed(seed + 1)
            with torch.no_grad():
                for net in coder.nets.values():
                    net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=gen))
                    net.out.bias.copy_(torch.randn(net.out.bias.shape, generator=gen) * 0.5)
            coder.fit_end()
        else:
            coder.fit_end()
        run = out / "models" / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        save_weights(codec, run / "weights.safetensors", overwrite=True)
        corpus[name] = []
        for i, ((h, w), img) in enumerate(zip(CROPS, images, strict=True)):
            path = run / f"orig-{i}.cdl"
            path.write_bytes(encode_image(codec, img[..., :h, :w].contiguous()))
            corpus[name].append(path)
    return corpus


# ---------------------------------------------------------------------------- workers
@dataclass
class Case:
    """One mutated file, and where it came from."""

    coder: str
    kind: str
    index: int
    source: int
    data: bytes
    note: str


def _rss_kb(pid: int) -> int:
    """Current resident memory of a process (KiB), 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


class _Worker:
    """A worker subprocess and its pipes (multiprocessing connections over plain fds)."""

    def __init__(self, spec: Path, log: Path) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
        with open(log, "ab") as sink:
            cmd = [sys.executable, str(WORKER), str(spec), str(req_r), str(resp_w)]
            self.proc = subprocess.Popen(cmd, pass_fds=(req_r, resp_w), stdout=sink, stderr=sink, env=env)
        os.close(req_r)
        os.close(resp_w)
        self.requests = Connection(req_w, readable=False)
        self.responses = Connection(resp_r, writable=False)
        self.case: Case | None = None
        self.created, self.started = time.perf_counter(), 0.0
        self.ready = False

    def send(self, case: Case) -> None:
        self.case, self.started = case, time.perf_counter()
        self.requests.send_bytes(pickle.dumps((case.index, case.coder, case.source, case.data)))

    def kill(self) -> int | None:
        """Stop the process (if still running) and return its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        for conn in (self.requests, self.responses):
            conn.close()
        return self.proc.wait()

    def log_tail(self, n: int = 4000) -> str:
        """The end of the worker's log, from its fatal-error report when there is one."""
        text = self.log.read_bytes().decode(errors="replace") if self.log.exists() else ""
        fatal = text.rfind("Fatal Python error")
        return text[fatal : fatal + n] if fatal >= 0 else text[-n:]


@dataclass
class Tally:
    """Outcome counts of one (coder, kind)."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    peak_kb: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.counts[k] for k in FAILURES)


class Pool:
    """Worker subprocesses that decode cases, with the time and memory watchdog."""

    def __init__(self, spec: Path, logs: Path, jobs: int, timeout: float, max_rss_mb: int) -> None:
        self.spec, self.logs, self.timeout, self.limit_kb = spec, logs, timeout, max_rss_mb * 1024
        self.started = 0
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self) -> _Worker:
        self.started += 1
        return _Worker(self.spec, self.logs / f"worker-{self.started}.log")

    def _ready(self, w: _Worker, timeout: float) -> bool:
        """Whether a (re)started worker has loaded its models, waiting up to ``timeout`` s."""
        if not w.ready and w.responses.poll(timeout):
            try:
                pickle.loads(w.responses.recv_bytes())
            except EOFError as e:
                raise RuntimeError(f"a fuzz worker failed to start:\n{w.log_tail()}") from e
            w.ready = True
        if not w.ready and time.perf_counter() - w.created > _START_S:
            raise RuntimeError(f"a fuzz worker did not start within {_START_S} s; see {w.log}")
        return w.ready

    def wait_ready(self) -> None:
        """Block until every worker has loaded its models (so rates leave out start-up)."""
        for w in self.workers:
            self._ready(w, _START_S)

    def _replace(self, w: _Worker) -> tuple[int | None, str]:
        status, tail = w.kill(), w.log_tail()
        self.workers[self.workers.index(w)] = self._start()
        return status, tail

    def run(self, cases: Iterator[Case]) -> Iterator[tuple[Case, dict[str, Any]]]:
        """Decode every case; yield each with its result (``outcome``, ``detail``, ...).

        A restarted worker loads its models while the others go on decoding.
        """
        pending = iter(cases)
        exhausted = False
        while True:
            for w in self.workers:
                if w.case is None and not exhausted and self._ready(w, 0):
                    case = next(pending, None)
                    if case is None:
                        exhausted = True
                    else:
                        w.send(case)
            busy = [w for w in self.workers if w.case is not None]
            if not busy and exhausted:
                return
            starting = [w.responses for w in self.workers if not w.ready]
            readable = wait([w.responses for w in busy] + starting, timeout=0.05)
            now = time.perf_counter()
            for w in busy:
                case = w.case
                assert case is not None
                result: dict[str, Any] | None = None
                if w.responses in readable:
                    try:
                        result = pickle.loads(w.responses.recv_bytes())
                    except (EOFError, OSError):
                        status, tail = self._replace(w)
                        result = {"outcome": "crash", "detail": f"worker died (exit status {status})\n{tail}"}
                    else:
                        w.case = None
                        if result["peak_kb"] > self.limit_kb:
                            mib = result["peak_kb"] // 1024
                            result["detail"] = f"peak RSS {mib} MiB; {result['outcome']}: {result['detail']}"
                            result["outcome"] = "memory"
                            self._replace(w)  # its allocator may keep the memory
                elif now - w.started > self.timeout:
                    self._replace(w)
                    result = {"outcome": "hang", "detail": f"no answer within {self.timeout:g} s"}
                elif (rss := _rss_kb(w.proc.pid)) > self.limit_kb:
                    self._replace(w)
                    result = {"outcome": "memory", "detail": f"RSS {rss // 1024} MiB while decoding",
                              "peak_kb": rss}  # fmt: skip
                if result is not None:
                    result.setdefault("seconds", now - w.started)
                    result.setdefault("peak_kb", 0)
                    yield case, result

    def close(self) -> None:
        for w in self.workers:
            w.kill()


# ---------------------------------------------------------------------------- campaign
def _cases(coder: str, kind: str, n: int, seed: int, files: list[bytes]) -> Iterator[Case]:
    for i in range(n):
        if coder == FAULTS:
            yield Case(coder, kind, i, 0, bytes([i % 8]), f"fault {i % 8}")
            continue
        rng = random.Random(f"{seed}:{coder}:{kind}:{i}")  # str seeds are hashed deterministically
        source = rng.randrange(len(files))
        data, note = mutate(kind, rng, files[source], files[:source] + files[source + 1 :])
        yield Case(coder, kind, i, source, data, note)


def _record(out: Path, case: Case, result: dict[str, Any]) -> None:
    """Save a failing case's bytes and what happened, to reproduce it."""
    stem = out / "failures" / f"{case.coder.strip('!')}-{case.kind}-{case.index}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".cdl").write_bytes(case.data)
    stem.with_suffix(".txt").write_text(
        f"outcome: {result['outcome']}\ncoder: {case.coder}\nkind: {case.kind}\ncase: {case.index}\n"
        f"original: orig-{case.source}.cdl\nmutation: {case.note}\nseconds: {result['seconds']:.2f}\n"
        f"peak RSS: {result['peak_kb'] // 1024} MiB\n\n{result['detail']}\n"
    )


def _error_class(detail: str) -> str:
    """A clean error's message with numbers and quoted names blanked (groups alike errors)."""
    text = detail.split(" (", 1)[0]
    return "".join("#" if ch.isdigit() else ch for ch in text)[:90]


def run_campaign(out: Path, coders: Sequence[str], kinds: Sequence[str], cases: int, *, seed: int = 0,
                 jobs: int = 2, timeout: float = 10.0, max_rss_mb: int = 2048,
                 faults: bool = False, quiet: bool = False) -> dict[str, dict[str, Tally]]:  # fmt: skip
    """Run the campaign; returns coder -> kind -> :class:`Tally` (also in ``out/summary.json``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    if faults:
        coders, kinds = [FAULTS], ["faults"]
        (out / "fault.cdl").write_bytes(b"\0")
        corpus = {FAULTS: [out / "fault.cdl"]}
    else:
        corpus = build_corpus(out, coders, seed)
    spec = out / "worker-spec.json"
    spec.write_text(json.dumps({
        "models": {c: str(out / "models" / c) for c in coders if c != FAULTS},
        "originals": {c: [str(p) for p in paths] for c, paths in corpus.items()},
        "max_rss_mb": max_rss_mb,
    }))  # fmt: skip
    tallies: dict[str, dict[str, Tally]] = {c: {k: Tally() for k in kinds} for c in coders}
    meta = {"seed": seed, "cases": cases, "timeout": timeout, "max_rss_mb": max_rss_mb, "stopped": None}
    pool = Pool(spec, logs, jobs, timeout, max_rss_mb)
    pool.wait_ready()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, disable=quiet) as bar:
            for coder in coders:
                files = [p.read_bytes() for p in corpus[coder]]
                for kind in kinds:
                    task = bar.add_task(f"{coder} {kind}", total=cases)
                    tally = tallies[coder][kind]
                    t0 = time.perf_counter()
                    for case, result in pool.run(_cases(coder, kind, cases, seed, files)):
                        outcome = result["outcome"]
                        tally.counts[outcome] += 1
                        tally.peak_kb = max(tally.peak_kb, result["peak_kb"])
                        if outcome == "clean":
                            tally.errors[_error_class(result["detail"])] += 1
                        if outcome in FAILURES:
                            _record(out, case, result)
                        bar.advance(task)
                    tally.seconds = time.perf_counter() - t0
                    _write_summary(out, tallies, {**meta, "workers_started": pool.started})
                    if quiet:  # one line per group instead of the bar, for logs
                        counts = ", ".join(f"{k} {n}" for k, n in sorted(tally.counts.items()))
                        line = f"{coder} {kind}: {counts} ({tally.seconds:.0f} s)"
                        print(line, file=sys.stderr, flush=True)
    except RuntimeError as e:  # a worker could not start again: keep what was measured
        meta["stopped"] = str(e).splitlines()[0]
        print(f"campaign stopped: {e}", file=sys.stderr)
    finally:
        pool.close()
    _write_summary(out, tallies, {**meta, "workers_started": pool.started})
    return tallies


def _write_summary(out: Path, tallies: dict[str, dict[str, Tally]], meta: dict[str, Any]) -> None:
    """``out/summary.json``: the counts so far (written after every group)."""
    results = {c: {k: {"cases": t.cases, **{col: t.counts[col] for col in COLUMNS}, "seconds": t.seconds,
                       "peak_rss_mb": t.peak_kb // 1024, "top_errors": t.errors.most_common(8)}
                   for k, t in per.items()} for c, per in tallies.items()}  # fmt: skip
    (out / "summary.json").write_text(json.dumps({**meta, "results": results}, indent=1))


def table_rows(tallies: dict[str, dict[str, Tally]]) -> list[list[object]]:
    """One row per (coder, kind): cases, each outcome, cases/s."""
    rows: list[list[object]] = []
    for coder, per in tallies.items():
        for kind, t in per.items():
            rate = t.cases / t.seconds if t.seconds else 0.0
            rows.append([coder, kind, t.cases, *(t.counts[c] for c in COLUMNS), f"{rate:.0f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (1 when any case failed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per coder per mutation kind")
    ap.add_argument("--coders", default=",".join(CODERS), help="comma-separated built-in coders")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated mutation kinds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it is a hang")
    ap.add_argument("--max-rss-mb", type=int, default=2048, help="worker memory that makes a blow-up")
    ap.add_argument("--out", type=Path, default=Path("bench/out/fuzz"))
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--inject-faults", action="store_true",
                    help="test-only: run a fake model failing in every way once per 8 cases")  # fmt: skip
    args = ap.parse_args(argv)
    coders = [c.strip() for c in args.coders.split(",") if c.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [c for c in coders if c not in CODERS] + [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown coder or kind: {', '.join(bad)} "
                 f"(coders: {', '.join(CODERS)}; kinds: {', '.join(KINDS)})")
    tallies = run_campaign(args.out, coders, kinds, args.cases, seed=args.seed, jobs=max(1, args.jobs),
                           timeout=args.timeout, max_rss_mb=args.max_rss_mb, faults=args.inject_faults,
                           quiet=args.quiet)  # fmt: skip
    from bench._common import machine, print_table

    print(machine())
    print_table(f"fuzzing: {args.cases} cases per coder and kind, seed {args.seed}",
                ["coder", "kind", "cases", *COLUMNS, "cases/s"], table_rows(tallies))  # fmt: skip
    failed = sum(t.failures for per in tallies.values() for t in per.values())
    if failed:
        print(f"{failed} failing case(s): see {args.out / 'failures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
