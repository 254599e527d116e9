"""A ``bench/fuzz.py`` worker process: loads the models once, then decodes cases one by one.

Run by the harness as ``python bench/_fuzz_worker.py SPEC.json REQUEST_FD RESPONSE_FD``. The
spec names the model run folders and each model's original files; the worker decodes the
originals once (the reference images) and answers ``ready``. Each request is a pickled
``(case_id, model, source_index, data)``; each answer a pickled dict: ``outcome`` (one of
:data:`OUTCOMES`), ``detail`` (the error line or traceback), ``peak_kb`` (the process's peak
RSS during the case: the peak is reset before each case) and ``seconds``. Crashes, hangs and
memory blow-ups are judged by the parent, which kills and restarts the worker.

The test-only model :data:`FAULTS` (spec ``"faults": true``) misbehaves on purpose, one way
per first byte of the case, so the harness's own detection can be tested.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import pickle
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

OUTCOMES = ("clean", "identical", "wrong", "unexpected")
FAULTS = "!faults"
"""Name of the test-only fault model (never a coder name: coder names have no ``!``)."""
_FAULT_KINDS = ("identical", "clean", "unexpected", "wrong", "abort", "segfault", "hang", "memory")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next reading is this case's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the peak is then the process's lifetime peak
        pass


def peak_rss_kb() -> int:
    """Peak resident memory (KiB) since the last :func:`_reset_peak` (or process start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _fault(data: bytes, reference: torch.Tensor, limit_mb: int) -> torch.Tensor:
    """Misbehave as ``data[0]`` selects (see :data:`_FAULT_KINDS`)."""
    from codec_lab.corelib.errors import BitstreamError

    kind = _FAULT_KINDS[data[0] % len(_FAULT_KINDS)] if data else "identical"
    if kind == "clean":
        raise BitstreamError("fault case: refused")
    if kind == "unexpected":
        raise ValueError("fault case: an unexpected exception")
    if kind == "wrong":
        return reference + 1
    if kind == "abort":
        os.abort()
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "hang":
        time.sleep(3600)
    if kind == "memory":
        block = bytearray(b"\x01") * ((limit_mb + 256) << 20)  # written: really resident
        time.sleep(0.5)  # long enough for the parent's watchdog to see it too
        del block
    return reference


def _load(run: Path) -> Any:
    """The run's codec (eval mode): built from its config.yaml, weights loaded strictly.

    ``load_run`` without its pre-check of tensor shapes against the config, which (while the
    run-folder checks are reworked) also refuses the resized entropy tables of a fitted
    ``entropy`` rate.
    """
    from codec_lab.corelib.runs import load_weights, read_config
    from codec_lab.registry.compose import build_codec

    codec = build_codec(read_config(run)["model"])
    load_weights(codec, run / "weights.safetensors")
    return codec.eval()


class Worker:
    """The models, their reference images, and the decode of one case."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from codec_lab.corelib.files import decode_bytes

        self.decode_bytes = decode_bytes
        self.limit_mb = int(spec.get("max_rss_mb", 2048))
        self.codecs = {name: _load(Path(run)) for name, run in spec["models"].items()}
        self.digests = {name: c.weights_digest() for name, c in self.codecs.items()}
        self.originals: dict[str, list[bytes]] = {}
        self.references: dict[str, list[torch.Tensor]] = {}
        for name, paths in spec["originals"].items():
            files = [open(p, "rb").read() for p in paths]
            self.originals[name] = files
            if name == FAULTS:
                self.references[name] = [torch.zeros(1, 3, 8, 8)]
                continue
            self.references[name] = [self._decode(name, d) for d in files]

    def _decode(self, model: str, data: bytes) -> torch.Tensor:
        return self.decode_bytes(self.codecs[model], data, "fuzz.cdl", self.digests[model])

    def run(self, model: str, source: int, data: bytes) -> tuple[str, str]:
        """Decode one case: its outcome and a detail line (or traceback)."""
        from codec_lab.corelib.errors import CodecError

        reference = self.references[model][source]
        try:
            if model == FAULTS:
                x_hat = _fault(data, reference, self.limit_mb)
            else:
                x_hat = self._decode(model, data)
        except CodecError as e:
            text = str(e)
            if "\n" in text or not text.strip():
                return "unexpected", f"{type(e).__name__} with a message that is not one line: {text!r}"
            return "clean", f"{type(e).__name__}: {text}"
        except Exception:
            return "unexpected", traceback.format_exc()
        if x_hat.shape == reference.shape and torch.equal(x_hat, reference):
            return "identical", ""
        # Equal to another original of the same model: the case was that file, intact.
        if any(r.shape == x_hat.shape and torch.equal(r, x_hat) for r in self.references[model]):
            return "identical", "another original"
        return "wrong", f"decoded to a different {tuple(x_hat.shape)} image"


def main(argv: list[str]) -> None:
    """Serve cases until the request pipe closes."""
    faulthandler.enable()  # a segfault leaves a Python traceback in the worker's log
    torch.set_num_threads(1)  # one worker per core
    spec = json.loads(open(argv[0]).read())
    requests = Connection(int(argv[1]), writable=False)
    responses = Connection(int(argv[2]), readable=False)
    worker = Worker(spec)
    responses.send_bytes(pickle.dumps({"ready": True, "peak_kb": peak_rss_kb()}))
    while True:
        try:
            case_id, model, source, data = pickle.loads(requests.recv_bytes())
        except EOFError:
            return
        _reset_peak()
        t0 = time.perf_counter()
        outcome, detail = worker.run(model, source, data)
        answer = {"id": case_id, "outcome": outcome, "detail": detail, "peak_kb": peak_rss_kb(),
                  "seconds": time.perf_counter() - t0}  # fmt: skip
        responses.send_bytes(pickle.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1:])
