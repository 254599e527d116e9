"""Structure-aware fuzzing of the format-3 container with a real trained codec.

Each case changes header fields of a real file, untiled or tiled (image size, tile size, varint
encodings, stream count and lengths, digest, symbol CRCs, flags, version, truncation,
extension, payload bytes, swapped tiles), one to three at a time, and recomputes the trailing
CRC so that the change reaches the field checks. Every case must end in a one-line
:class:`BitstreamError` or decode to exactly the original image. The cases run in a fresh
process (fixed seed, time budget) whose peak memory is bounded: nothing may be allocated for
what a damaged header merely claims (e.g. an image of 2**28 pixels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codec_lab.corelib.files import encode_image
from codec_lab.registry.runs import load_run
from tests.helpers import image_tensor

BUDGET_S = 20.0
MAX_CASES = 2000
GROWTH_LIMIT_KB = 256 * 1024  # ru_maxrss is in KiB on Linux
"""Peak memory the cases may add to the process once set up. Importing torch and CompressAI
alone takes about 1 GiB of RSS here, so the bound is on what decoding adds: claims at the pixel
limit (2**28 pixels) would need gigabytes for an image, and must be refused first."""

FUZZ_SCRIPT = r'''
import json, random, resource, struct, sys, time, zlib
import torch
torch.set_num_threads(1)
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.files import decode_bytes
from codec_lab.registry.runs import load_run

run, seed, budget, max_cases = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
files = sys.argv[5:]
codec = load_run(run)
rng = random.Random(seed)
LIMIT = 2**28


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def read_varint(data, pos):
    v = shift = 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


def parse(data):
    """The file as editable fields; varints kept as raw bytes so they can be malformed."""
    f = {"magic": data[:2], "version": data[2], "flags": data[3]}
    pos = 4
    for k in ("h", "w", "t"):
        v, end = read_varint(data, pos)
        f[k], f[k + "_raw"], pos = v, data[pos:end], end
    f["digest"], pos = data[pos:pos + 8], pos + 8
    tile = 16 * f["t"]
    tiles = (-(-f["h"] // tile) * -(-f["w"] // tile)) if tile else 1
    n, entries = (data[3] & 15) * tiles, []
    for i in range(n):
        raw = b""
        if i < n - 1:
            _, end = read_varint(data, pos)
            raw, pos = data[pos:end], end
        entries.append([raw, data[pos:pos + 4]])
        pos += 4
    f["entries"], f["payload"] = entries, data[pos:-4]
    return f


def build(f):
    head = (f["magic"] + bytes([f["version"] & 255, f["flags"] & 255]) + f["h_raw"] + f["w_raw"] + f["t_raw"]
            + f["digest"])
    body = head + b"".join(raw + crc for raw, crc in f["entries"]) + f["payload"]
    body = body[: f["cut"]] if "cut" in f else body
    return body + struct.pack("<I", zlib.crc32(body))


def size_value(f, k):
    other = f["w" if k == "h" else "h"]
    return max(0, rng.choice([0, 1, 2, 7, 8, 9, f[k] - 1, f[k] + 1, f[k] - 8, f[k] + 8, f[k] * 2, f[k] // 2,
                              rng.randrange(1, 4096), rng.randrange(1, 1 << 16), LIMIT // max(other, 1),
                              LIMIT // max(other, 1) + 1, LIMIT, 2**31, 2**32 - 1, 2**32, 2**35]))


def m_size(f):
    k = rng.choice("hw")
    f[k] = size_value(f, k)
    f[k + "_raw"] = varint(f[k])
    return f"{k}={f[k]}"


def m_both_sizes(f):
    f["h"], f["w"] = size_value(f, "h"), size_value(f, "w")
    f["h_raw"], f["w_raw"] = varint(f["h"]), varint(f["w"])
    return f"size={f['h']}x{f['w']}"


def m_tile(f):
    """Another tile size: more or fewer tiles than the entries list, or as many."""
    f["t"] = rng.choice([0, 1, 2, 3, 4, 64, 65, 128, f["t"] - 1, f["t"] + 1, f["t"] * 2, 2**28, 2**32 - 1])
    f["t"] = max(0, f["t"])
    f["t_raw"] = varint(f["t"])
    return f"tile {16 * f['t']}"


def m_swap_tiles(f):
    """Two entries (length + CRC) swapped with their payloads, as if two tiles traded places."""
    lengths = [read_varint(raw, 0)[0] for raw, _ in f["entries"][:-1]]
    if len(lengths) < 2:
        return "one entry: nothing to swap"
    i, j = sorted(rng.sample(range(len(lengths)), 2))
    starts = [sum(lengths[:k]) for k in range(len(lengths) + 1)]
    parts = [f["payload"][starts[k]:starts[k + 1]] for k in range(len(lengths))] + [f["payload"][starts[-1]:]]
    parts[i], parts[j] = parts[j], parts[i]
    f["entries"][i], f["entries"][j] = f["entries"][j], f["entries"][i]
    f["payload"] = b"".join(parts)
    return f"swap entries {i} and {j}"


def m_swap(f):
    f["h_raw"], f["w_raw"] = f["w_raw"], f["h_raw"]
    return "swap h/w"


def m_varint_form(f):
    k = rng.choice(["h_raw", "w_raw", "t_raw"])
    kind = rng.randrange(4)
    if kind == 0:  # overlong: same value, one more byte
        raw = bytearray(f[k]); raw[-1] |= 0x80; f[k] = bytes(raw) + b"\x00"
    elif kind == 1:  # never terminated
        f[k] = b"\xff" * rng.randrange(1, 8)
    elif kind == 2:  # raw random bytes
        f[k] = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 7)))
    else:  # dropped byte
        f[k] = f[k][:-1]
    return f"{k} form {kind}: {f[k].hex()}"


def m_digest(f):
    d = bytearray(f["digest"])
    if rng.random() < 0.7:
        i = rng.randrange(8 * len(d)); d[i // 8] ^= 1 << (i % 8)
    else:
        d = bytearray(rng.randbytes(rng.choice([8, 8, 7, 9])))
    f["digest"] = bytes(d)
    return f"digest {f['digest'].hex()}"


def m_crc(f):
    e = rng.choice(f["entries"])
    c = bytearray(e[1])
    i = rng.randrange(32); c[i // 8] ^= 1 << (i % 8)
    e[1] = bytes(c) if rng.random() < 0.8 else rng.randbytes(4)
    return f"symbol crc {e[1].hex()}"


def m_flags(f):
    f["flags"] = rng.choice([0, 2, 3, 15, 0x11, 0x81, 0xF1, rng.randrange(256)])
    return f"flags {f['flags']:#x}"


def m_version_magic(f):
    if rng.random() < 0.5:
        f["version"] = rng.choice([0, 1, 3, 255])
        return f"version {f['version']}"
    f["magic"] = rng.choice([b"CE", b"DC", b"\0\0", rng.randbytes(2)])
    return f"magic {f['magic'].hex()}"


def m_streams(f):
    """Declare another stream count, with explicit lengths that may or may not fit."""
    n = rng.choice([2, 3, 15])
    f["flags"] = n
    size = len(f["payload"])
    lengths = [rng.choice([0, 1, size // 2, size, size + 1, rng.randrange(0, 2**20)]) for _ in range(n - 1)]
    entries = [[varint(k), rng.randbytes(4)] for k in lengths]
    f["entries"] = entries + [[b"", f["entries"][-1][1]]]
    return f"{n} streams"


def m_length(f):
    """An explicit length in a one-stream file (the last length is implied)."""
    f["entries"][0][0] = varint(rng.randrange(0, len(f["payload"]) + 3))
    return f"length {f['entries'][0][0].hex()}"


def m_truncate(f):
    if not f["payload"]:
        return "payload already empty"
    k = rng.randrange(1, len(f["payload"]) + 1)
    f["payload"] = f["payload"][:-k]
    return f"payload -{k}"


def m_extend(f):
    k = rng.choice([1, 3, 4, 8, rng.randrange(1, 64)])
    extra = b"\0" * k if rng.random() < 0.3 else rng.randbytes(k)
    f["payload"] = f["payload"] + extra if rng.random() < 0.7 else extra + f["payload"]
    return f"payload +{k}"


def m_payload(f):
    if not f["payload"]:
        return "payload empty"
    p = bytearray(f["payload"])
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(p)); p[i] ^= 1 << rng.randrange(8)
    f["payload"] = bytes(p)
    return "payload bits"


def m_cut(f):
    head = len(build({**f, "payload": b""})) - 4
    f["cut"] = rng.randrange(0, head + 1)
    return f"cut at {f['cut']}"


MUTATORS = [m_size, m_both_sizes, m_swap, m_varint_form, m_digest, m_crc, m_flags, m_version_magic,
            m_streams, m_length, m_truncate, m_extend, m_payload, m_cut, m_tile, m_swap_tiles]

originals = []
for path in files:
    data = open(path, "rb").read()
    assert build(parse(data)) == data, "the fuzzer's parser disagrees with the format"
    originals.append((data, decode_bytes(codec, data)))
setup_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

counts = {"refused": 0, "same image": 0}
failures = []
start, case = time.perf_counter(), 0
while case < max_cases and time.perf_counter() - start < budget:
    data, reference = originals[case % len(originals)]
    f = parse(data)
    # Every mutator in turn first, then random combinations of one to three.
    first = MUTATORS[case % len(MUTATORS)] if case < 2 * len(MUTATORS) else rng.choice(MUTATORS)
    what = [m(f) for m in [first] + rng.sample(MUTATORS, rng.choice([0, 0, 1, 2]))]
    bad = build(f)
    case += 1
    try:
        x_hat = decode_bytes(codec, bad, "fuzz.cdl")
    except BitstreamError as e:
        if "\n" in str(e):
            failures.append({"case": what, "error": "multi-line: " + str(e)})
        counts["refused"] += 1
        continue
    except Exception as e:
        failures.append({"case": what, "error": f"{type(e).__name__}: {e}"[:300]})
        continue
    if x_hat.shape == reference.shape and torch.equal(x_hat, reference):
        counts["same image"] += 1
    else:
        failures.append({"case": what, "error": f"decoded to another image {tuple(x_hat.shape)}"})
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"cases": case, "counts": counts, "failures": failures[:20], "n_failures": len(failures),
                  "seconds": time.perf_counter() - start, "setup_kb": setup_kb, "peak_kb": peak_kb}))
'''


def test_fuzzed_headers_are_refused_cleanly_within_bounded_memory(trained_run: Path, tmp_path: Path) -> None:
    codec = load_run(trained_run)
    files = []
    # 1- and 2-byte size varints, one tile (the default tile size) and 3x2 tiles of 48 pixels.
    for i, (h, w, tile) in enumerate([(40, 48, None), (136, 72, None), (136, 72, 48)]):
        path = tmp_path / f"f{i}.cdl"
        path.write_bytes(encode_image(codec, image_tensor(h, w, seed=i), tile=tile))
        files.append(str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CODEC_MAX_PIXELS", None)
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, str(trained_run), "1234", str(BUDGET_S), str(MAX_CASES), *files],
        capture_output=True, text=True, timeout=BUDGET_S + 240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["n_failures"] == 0, json.dumps(report["failures"], indent=1)
    # Every mutator twice over at least (on a 2-core machine: thousands of cases).
    assert report["cases"] >= 32, report
    assert report["counts"]["refused"] > 0.8 * report["cases"]
    # The child's own peak (what RUSAGE_CHILDREN reports for this one child; ours would also count
    # every earlier subprocess of the session), above its peak once imported and set up.
    growth = report["peak_kb"] - report["setup_kb"]
    assert growth < GROWTH_LIMIT_KB, f"fuzzing added {growth / 1024:.0f} MiB: {report}"
