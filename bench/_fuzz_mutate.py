"""Mutators of compressed files for ``bench/fuzz.py``: structure-aware and plain.

Structure-aware cases go through the container's own ``unpack``/``pack``: a random field of
the :class:`~codec_lab.corelib.container.Header` dataclass (whatever fields the current
format has) and/or the stream payloads are changed, and the file is packed again, so the
trailing checksum is right and the change reaches the field checks and the decoders. A value
``pack`` refuses to write (a negative size, a CRC of 33 bits, a digest that is not hex) is
written as raw bytes instead: the field's bytes are located by packing the header twice with
values differing only in that field and diffing the two files, which needs nothing of the
layout beyond ``pack`` and the 4-byte trailing CRC-32. Plain cases change bytes of the whole
file, with or without recomputing that CRC.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import struct
import zlib
from collections.abc import Sequence
from typing import Any

from codec_lab.corelib.container import Header, pack, unpack

__all__ = ["KINDS", "mutate", "with_crc"]

KINDS = ("struct", "plain", "plain-crc")
"""Mutation kinds: structure-aware, plain bytes, plain bytes with the trailing CRC fixed."""

_CRC = struct.Struct("<I")
Path = tuple[Any, ...]  # (field name,) or (field name, index)
_BIG = [0, 1, 2, 7, 8, 9, 255, 256, 2**16, 2**24, 2**28, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**35, 2**63]


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32 (the container's trailing checksum)."""
    return body + _CRC.pack(zlib.crc32(body))


def _varint(value: int) -> bytes:
    """Unsigned LEB128 of any size (the container's own writer stops at 2**32)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


# ---------------------------------------------------------------------------- header fields
def _get(header: Header, path: Path) -> Any:
    value = getattr(header, path[0])
    return value[path[1]] if len(path) > 1 else value


def _set(header: Header, path: Path, value: Any) -> None:
    if len(path) == 1:
        setattr(header, path[0], value)
        return
    seq = list(getattr(header, path[0]))
    seq[path[1]] = value
    old = getattr(header, path[0])
    setattr(header, path[0], tuple(seq) if isinstance(old, tuple) else seq)


def _paths(header: Header) -> list[Path]:
    """Every mutable scalar of the header: int and str fields, elements of int sequences."""
    out: list[Path] = []
    for f in dataclasses.fields(header):
        value = getattr(header, f.name)
        if isinstance(value, (int, str)):
            out.append((f.name,))
        elif isinstance(value, (list, tuple)):
            out.extend((f.name, i) for i, v in enumerate(value) if isinstance(v, (int, str)))
    return out


def _packs(header: Header, streams: list[bytes]) -> bytes | None:
    """The file's body (without its CRC), or None where ``pack`` refuses the header."""
    try:
        return pack(copy.deepcopy(header), streams)[:-4]
    except (ValueError, TypeError, OverflowError):
        return None


def _derived(header: Header, streams: list[bytes], path: Path) -> bool:
    """True for a field ``pack`` computes from the streams (the stream lengths)."""
    value = getattr(header, path[0])
    return isinstance(value, list) and value == [len(s) for s in streams]


def _diff(a: bytes, b: bytes) -> tuple[int, int] | None:
    """The span of ``a`` that differs from ``b`` (common prefix and suffix removed)."""
    n = min(len(a), len(b))
    pre = next((i for i in range(n) if a[i] != b[i]), n)
    suf = next((i for i in range(n - pre) if a[-1 - i] != b[-1 - i]), n - pre)
    return (pre, len(a) - suf) if pre < len(a) - suf else None


def _locate(header: Header, streams: list[bytes], path: Path) -> tuple[int, int] | None:
    """Where ``path``'s value lies in the packed body: the union of the spans that change
    when only that value changes (several probes, so every byte of a varint is covered)."""
    base = _packs(header, streams)
    seq = getattr(header, path[0])
    if base is None or (len(path) > 1 and path[1] >= len(seq)):  # gone with a dropped stream
        return None
    spans = []
    if _derived(header, streams, path):
        # A length is a boundary: moving one byte across it changes only the length's bytes.
        i = path[1]
        if i + 1 < len(streams) and streams[i]:
            moved = list(streams)
            moved[i], moved[i + 1] = streams[i][:-1], streams[i][-1:] + streams[i + 1]
            other = _packs(header, moved)
            span = _diff(base, other) if other is not None else None
            spans += [span] if span else []
    else:
        value = _get(header, path)
        if isinstance(value, str):
            probes: list[Any] = ["".join("0" if ch != "0" else "1" for ch in value)]
        else:
            probes = [value ^ m for m in (1, 0x80, 0x4000, 0x200000, 0x10000000, 0xFF, 0xFFFFFFFF)]
        for probe in probes:
            h = copy.deepcopy(header)
            _set(h, path, probe)
            other = _packs(h, streams)
            span = _diff(base, other) if other is not None else None
            spans += [span] if span else []
    if not spans:
        return None
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _int_value(rng: random.Random, v: int) -> int:
    """A new value for an integer field: near the old one, a bit flip, or a boundary."""
    choices = [v - 1, v + 1, v * 2, v // 2, -v, -1, v ^ (1 << rng.randrange(32)), rng.randrange(1 << 32)]
    return rng.choice(choices + _BIG)


def _raw_int(rng: random.Random, v: int, width: int) -> bytes:
    """Raw bytes for an integer field: a value in some encoding, or a malformed one."""
    u = v & ((1 << 70) - 1)  # negatives as their low bits
    forms = [
        _varint(u),
        (v & 0xFFFFFFFF).to_bytes(4, "little"),
        bytearray(_varint(u))[:-1] + bytes([_varint(u)[-1] | 0x80]) + b"\x00",  # overlong
        b"\xff" * rng.randrange(1, 9),  # never terminated
        b"",
        rng.randbytes(rng.randrange(1, 7)),
        rng.randbytes(width),
    ]
    return rng.choice(forms)


def _mutate_field(header: Header, streams: list[bytes], rng: random.Random,
                  raw: list[tuple[Path, bytes]]) -> str:  # fmt: skip
    """Change one header field; values ``pack`` cannot write are queued in ``raw``."""
    paths = _paths(header)
    if not paths:
        return "no header fields"
    path = rng.choice(paths)
    name = ".".join(str(p) for p in path)
    old = _get(header, path)
    width = 8 if isinstance(old, str) else 4
    if rng.random() < 0.2:  # a malformed encoding of the field
        data = _raw_int(rng, old if isinstance(old, int) else 0, width)
        raw.append((path, data))
        return f"{name} raw {data.hex()}"
    if isinstance(old, str):
        chars = list(old)
        if chars and rng.random() < 0.7:
            i = rng.randrange(len(chars))
            chars[i] = rng.choice([c for c in "0123456789abcdef" if c != chars[i]])
            new: Any = "".join(chars)
        else:
            new = rng.choice(["", "zz" * (len(old) // 2), old[:-2], old + "00"])
    else:
        new = _int_value(rng, old)
    if _derived(header, streams, path) and 0 <= new and len(streams) > path[1] + 1:
        # A writable length moves the boundary between stream i and i + 1.
        i = path[1]
        joined = streams[i] + streams[i + 1]
        if new <= len(joined):
            streams[i], streams[i + 1] = joined[:new], joined[new:]
            return f"{name} {old} -> {new} (boundary moved)"
    h = copy.deepcopy(header)
    _set(h, path, new)
    if not _derived(header, streams, path) and _packs(h, streams) is not None:
        _set(header, path, new)
        return f"{name} {old!r} -> {new!r}"
    data = _raw_int(rng, new, width) if isinstance(new, int) else rng.randbytes(rng.choice([0, 7, 9]))
    raw.append((path, data))
    return f"{name} {old!r} -> {new!r} raw {data.hex()}"


# ---------------------------------------------------------------------------- payloads
def _mutate_streams(header: Header, streams: list[bytes], rng: random.Random, donors: Sequence[bytes]) -> str:
    """Change stream payloads (the CRCs in the header stay those of the original symbols)."""
    i = rng.randrange(len(streams))
    s = bytearray(streams[i])
    op = rng.randrange(12)
    # Per-stream lists of the header (CRCs, lengths): kept in step when streams come and go.
    lists = {f.name: getattr(header, f.name) for f in dataclasses.fields(header)}
    per_stream = [k for k, v in lists.items() if isinstance(v, list) and len(v) == len(streams)]
    if op == 0 and s:
        for _ in range(rng.randrange(1, 9)):
            j = rng.randrange(len(s))
            s[j] ^= 1 << rng.randrange(8)
        what = "bit flips"
    elif op == 1 and s:
        for _ in range(rng.randrange(1, 5)):
            s[rng.randrange(len(s))] = rng.choice([0, 0xFF, 0x80, 0x7F, rng.randrange(256)])
        what = "bytes set"
    elif op == 2:
        k = rng.randrange(0, len(s) + 1)
        s = s[:-k] if rng.random() < 0.7 and k else s[k:]
        what = f"truncated by {k}"
    elif op == 3:
        k = rng.choice([1, 3, 4, 8, rng.randrange(1, 200)])
        extra = bytes(k) if rng.random() < 0.4 else rng.randbytes(k)
        s = s + extra if rng.random() < 0.7 else extra + s
        what = f"extended by {k}"
    elif op == 4:
        s = bytearray()
        what = "emptied"
    elif op == 5:
        s = bytearray(len(s)) if rng.random() < 0.5 else bytearray(b"\xff" * len(s))
        what = "zeroed/filled"
    elif op == 6:
        s = bytearray(rng.randbytes(rng.choice([len(s), rng.randrange(0, 400)])))
        what = "random bytes"
    elif op == 7 and len(streams) > 1:
        j = rng.randrange(len(streams))
        streams[i], streams[j] = streams[j], streams[i]
        return f"streams {i}, {j} swapped"
    elif op == 8 and len(streams) > 1:
        # Drop or duplicate a stream with its per-stream header entries (a writable header).
        drop = rng.random() < 0.5
        for name in per_stream:
            lst = list(getattr(header, name))
            lst[i:i + 1] = [] if drop else [lst[i], lst[i]]
            setattr(header, name, lst)
        streams[i:i + 1] = [] if drop else [streams[i], streams[i]]
        return f"stream {i} {'dropped' if drop else 'duplicated'}"
    elif op == 9 and donors:
        donor = rng.choice(donors)
        try:
            _, others = unpack(donor)
        except Exception:  # a donor of another layout: nothing to splice
            return "no donor"
        s = bytearray(others[min(i, len(others) - 1)])
        what = "spliced from another file"
    elif op == 10 and s:
        j = rng.randrange(len(s) + 1)
        s = s[:j] + bytes([rng.randrange(256)]) + s[j:] if rng.random() < 0.5 else s[:j] + s[j + 1 :]
        what = "byte inserted/deleted"
    else:
        k = rng.randrange(1, 5)
        s = s + s[-k:] if s else bytearray(4)
        what = "tail repeated"
    streams[i] = bytes(s)
    return f"stream {i} {what}"


def _structured(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> tuple[bytes, str]:
    header, streams = unpack(data)
    header, streams = copy.deepcopy(header), list(streams)
    raw: list[tuple[Path, bytes]] = []
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        if rng.random() < 0.5:
            notes.append(_mutate_field(header, streams, rng, raw))
        else:
            notes.append(_mutate_streams(header, streams, rng, donors))
    body = _packs(header, streams)
    if body is None:  # an unwritable combination: keep the original header, plain-mutate
        return _plain(with_crc(data[:-4]), rng, fix_crc=True)[0], "; ".join(notes + ["unwritable: plain"])
    edits = [(span, b) for path, b in raw if (span := _locate(header, streams, path)) is not None]
    edits.sort(key=lambda e: -e[0][0])  # from the end, so earlier offsets stay valid
    end = len(body) + 1
    for (a, b), value in edits:
        if b <= end:
            body, end = body[:a] + value + body[b:], a
    return with_crc(body), "; ".join(notes)


# ---------------------------------------------------------------------------- plain
def _plain(data: bytes, rng: random.Random, fix_crc: bool, donors: Sequence[bytes] = ()) -> tuple[bytes, str]:
    """Byte-level damage anywhere in the file; ``fix_crc``: only the body, CRC recomputed."""
    b = bytearray(data[:-4] if fix_crc else data)
    notes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.randrange(8)
        j = rng.randrange(len(b) + 1)
        if op == 0 and b:
            for _ in range(rng.randrange(1, 9)):
                k = rng.randrange(len(b))
                b[k] ^= 1 << rng.randrange(8)
            notes.append("bit flips")
        elif op == 1 and b:
            for _ in range(rng.randrange(1, 5)):
                b[rng.randrange(len(b))] = rng.choice([0, 0xFF, 0x80, 0x7F, rng.randrange(256)])
            notes.append("bytes set")
        elif op == 2:
            k = rng.randrange(1, 17)
            b[j:j] = rng.randbytes(k)
            notes.append(f"{k} bytes inserted at {j}")
        elif op == 3:
            k = rng.randrange(1, 17)
            del b[j : j + k]
            notes.append(f"{k} bytes deleted at {j}")
        elif op == 4:
            del b[j:]
            notes.append(f"truncated at {j}")
        elif op == 5:
            k = rng.choice([1, 4, rng.randrange(1, 300)])
            b += rng.randbytes(k) if rng.random() < 0.6 else bytes(k)
            notes.append(f"{k} bytes appended")
        elif op == 6 and b:
            k = rng.randrange(j + 1)
            b[j:j] = b[k:j]
            notes.append(f"bytes {k}:{j} repeated")
        elif donors:
            d = rng.choice(donors)
            k = rng.randrange(len(d) + 1)
            b = b[:j] + bytearray(d[k:])
            notes.append(f"spliced at {j} with another file from {k}")
    out = with_crc(bytes(b)) if fix_crc else bytes(b)
    return out, "; ".join(notes)


def mutate(kind: str, rng: random.Random, data: bytes, donors: Sequence[bytes]) -> tuple[bytes, str]:
    """One case of ``kind`` (:data:`KINDS`) made from the valid file ``data``.

    Args:
        donors: other valid files of the same model, for splicing.
    Returns:
        The mutated bytes and a one-line description of what was changed.
    """
    if kind == "struct":
        return _structured(data, rng, donors)
    if kind in ("plain", "plain-crc"):
        return _plain(data, rng, fix_crc=kind == "plain-crc", donors=donors)
    raise ValueError(f"unknown mutation kind {kind!r}; valid: {', '.join(KINDS)}")
