"""The results model: per-image rows, their means and the description of the codec that made them.

Every table, report, JSON file and plot is rendered from a :class:`Results` (one rate-distortion
point) or a sequence of them (a curve, or codecs side by side), so all of them show the same
numbers. :meth:`Results.to_compressai` writes CompressAI's results schema
(``compressai.utils.plot`` reads it) plus our per-image rows and codec description, and
:meth:`Results.from_compressai` reads it back — also files written by CompressAI itself, which
hold means only.

Row keys: ``image``, ``height``, ``width``, ``bytes``, ``bpp`` (file bytes × 8 / pixels),
``bpp_<stream>`` (each stream's payload bits / pixels), ``psnr``, ``ms-ssim``, ``ssim``,
``enc_s``, ``dec_s``, ``est_bpp`` (the model's likelihood estimate — never a file), and the
scalars the codec reports (a rate's :attr:`~codec_lab.corelib.contracts.Rate.report_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from codec_lab.corelib.contracts.base import ReportColumn

if TYPE_CHECKING:  # only for annotations: the model itself needs no torch
    from codec_lab.corelib.codec import Codec

__all__ = [
    "COMPRESSAI_KEYS",
    "CodecDescription",
    "Results",
    "curve_from_compressai",
    "curve_to_compressai",
    "describe_codec",
]

COMPRESSAI_KEYS: dict[str, str] = {
    "bpp": "bpp",
    "psnr": "psnr-rgb",
    "ms-ssim": "ms-ssim-rgb",
    "ssim": "ssim-rgb",
    "enc_s": "encoding_time",
    "dec_s": "decoding_time",
    "est_bpp": "estimated_bpp",
}
"""Our row key → the key of CompressAI's ``results`` section (one list entry per RD point)."""

_NOT_AVERAGED = ("height", "width")
# Always written, even when unknown (null), as files of earlier versions did.
_CORE = ("bpp", "psnr", "ms-ssim", "ssim", "enc_s", "dec_s")


@dataclass(frozen=True)
class CodecDescription:
    """What made a set of results: enough to label, group and reproduce them.

    Attributes:
        name: short label (``cae+admm+histogram``, ``jpeg``, a run's name).
        summary: one line of free text (CompressAI's ``description``).
        components: kind → ``name@version`` (empty for a codec that is not composed).
        parameters: the settings, e.g. kind → its config keys, or ``{"quality": 40}``.
        streams: names of the coded streams, in coding order (``bpp_<name>`` row keys).
        columns: the scalars the codec reports per image (a rate's declared report columns);
            tables show exactly these, and nothing else that is codec-specific.
        num_parameters: trainable parameters, when the codec has any.
    """

    name: str = ""
    summary: str = ""
    components: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    streams: tuple[str, ...] = ()
    columns: tuple[ReportColumn, ...] = ()
    num_parameters: int | None = None

    def component(self, kind: str) -> str:
        """The name (without version) of the component of ``kind``, or ``""``."""
        return self.components.get(kind, "").split("@")[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``codec`` key of our results files)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "components": dict(self.components),
            "parameters": dict(self.parameters),
            "streams": list(self.streams),
            "columns": [{"key": c.key, "label": c.label, "fmt": c.fmt, "help": c.help,
                         **({"bounds": list(c.bounds)} if c.bounds is not None else {})}
                        for c in self.columns],  # fmt: skip
            "num_parameters": self.num_parameters,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CodecDescription:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(doc.get("name", "")),
            summary=str(doc.get("summary", "")),
            components=dict(doc.get("components", {})),
            parameters=dict(doc.get("parameters", {})),
            streams=tuple(doc.get("streams", ())),
            columns=tuple(ReportColumn(**{**c, "bounds": tuple(c["bounds"])} if c.get("bounds") else c)
                          for c in doc.get("columns", ())),  # fmt: skip
            num_parameters=doc.get("num_parameters"),
        )


def describe_codec(codec: Codec, name: str | None = None, summary: str = "") -> CodecDescription:
    """The description of a composed codec.

    Args:
        codec: the codec.
        name: label (default ``encoder+rate+coder`` names).
        summary: one line of free text.
    """
    parts = codec.components()
    config = codec.config
    return CodecDescription(
        name=name or "+".join(parts[k][0] for k in ("encoder", "rate", "coder")),
        summary=summary,
        components={k: f"{n}@{v}" for k, (n, v) in parts.items()},
        parameters={k: {p: v for p, v in sec.items() if p != "name"}
                    for k, sec in config.items() if isinstance(sec, Mapping)},  # fmt: skip
        streams=tuple(s.name for s in codec.specs),
        columns=tuple(codec.rate.report_columns),
        num_parameters=sum(p.numel() for p in codec.parameters()),
    )


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (
        isinstance(v, float) and math.isnan(v))  # fmt: skip


@dataclass
class Results:
    """One codec (at one setting) on a set of images: one rate-distortion point.

    Attributes:
        rows: one dict per image (see the module docstring for the keys).
        notices: things the user should know (e.g. an image converted to RGB).
        codec: what made the rows.
        means: set only when the per-image rows are unknown (a CompressAI file holds means
            only); otherwise :meth:`mean` computes them from ``rows``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    codec: CodecDescription = field(default_factory=CodecDescription)
    means: dict[str, float] | None = None

    def mean(self) -> dict[str, float]:
        """Mean of every numeric column over the images (NaNs skipped; sizes are not averaged)."""
        if self.means is not None:
            return dict(self.means)
        out: dict[str, float] = {}
        for key in self.rows[0] if self.rows else []:
            if key in _NOT_AVERAGED:
                continue
            vals = [r[key] for r in self.rows if _number(r.get(key))]
            if vals:
                out[key] = sum(vals) / len(vals)
        return out

    def to_compressai(self, name: str | None = None, description: str | None = None) -> dict[str, Any]:
        """CompressAI's results schema (one RD point), plus ``per_image`` rows and ``codec``.

        Args:
            name: overrides the codec's name.
            description: overrides the codec's summary.
        """
        m = self.mean()
        return {
            "name": self.codec.name if name is None else name,
            "description": self.codec.summary if description is None else description,
            "results": {ca: [m.get(ours)] for ours, ca in COMPRESSAI_KEYS.items()
                        if ours in m or ours in _CORE},  # fmt: skip
            "per_image": self.rows,
            "codec": self.codec.to_dict(),
        }

    @classmethod
    def from_compressai(cls, doc: Mapping[str, Any], point: int = 0) -> Results:
        """Read a results file of ours or of CompressAI (``point``: which RD point of a curve).

        Per-image rows are kept when the file has them (then the means are recomputed from
        them); otherwise the means come from the ``results`` lists.
        """
        codec = CodecDescription.from_dict(doc["codec"]) if isinstance(doc.get("codec"), Mapping) \
            else CodecDescription()
        # The file's own name and description win: a caller may have overridden them.
        codec = replace(codec, name=str(doc.get("name", codec.name)),
                        summary=str(doc.get("description", codec.summary)))
        rows = [dict(r) for r in doc.get("per_image", [])]
        if rows:
            return cls(rows=rows, codec=codec)
        res = doc.get("results", doc)  # CompressAI's plot also accepts the bare section
        means = {ours: float(res[ca][point]) for ours, ca in COMPRESSAI_KEYS.items()
                 if ca in res and point < len(res[ca]) and res[ca][point] is not None}  # fmt: skip
        return cls(codec=codec, means=means)


def curve_to_compressai(points: Sequence[Results], name: str, description: str) -> dict[str, Any]:
    """Several RD points of one codec (e.g. a quality sweep) as one CompressAI results file.

    Points are sorted by bpp. Beside CompressAI's lists, ``points`` keeps each point's codec
    description (its settings) and all its means, for :func:`curve_from_compressai`.
    """
    pts = sorted(points, key=lambda r: r.mean().get("bpp", math.inf))
    means = [p.mean() for p in pts]
    keys = [k for k in COMPRESSAI_KEYS if k in _CORE or any(k in m for m in means)]
    return {
        "name": name,
        "description": description,
        "results": {COMPRESSAI_KEYS[k]: [m.get(k) for m in means] for k in keys},
        "points": [{"codec": p.codec.to_dict(), "mean": m} for p, m in zip(pts, means, strict=True)],
    }


def curve_from_compressai(doc: Mapping[str, Any]) -> list[Results]:
    """Every RD point of a results file (ours or CompressAI's), in file order, means only."""
    res = doc.get("results", doc)
    extra = doc.get("points", [])
    out = []
    for i in range(len(res.get("bpp", []))):
        if i < len(extra):
            out.append(Results(codec=CodecDescription.from_dict(extra[i]["codec"]),
                               means=dict(extra[i]["mean"])))  # fmt: skip
        else:
            out.append(Results.from_compressai({**doc, "per_image": [], "codec": None}, point=i))
    return out
