"""``codec models``: the trained models shipped in the package, ready for ``--model NAME``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from codec_lab.cli._output import handle_errors, out
from codec_lab.registry.shipped_models import DEFAULT_FAMILY, DEFAULT_QUALITY, ShippedModel, load_index


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "–"


def _tail(folder: str) -> str:
    """``../shared/data/bsds500/train`` → ``bsds500/train``: the data set, not the machine's path."""
    return "/".join(folder.rstrip("/").split("/")[-2:])


def _fine_tuned(init: dict[str, object], steps: int) -> str:
    """``N steps fine-tuned [in R rounds] from …``: every round since the base, where known."""
    rounds = [r for r in init.get("rounds") or [] if isinstance(r, dict) and isinstance(r.get("steps"), int)]
    start = init.get("base") if rounds and isinstance(init.get("base"), dict) else init
    assert isinstance(start, dict)
    origin = (f" from a {start['step']:,}-step build" if isinstance(start.get("step"), int)
              else f" from {start['from']}" if start.get("from") else "")  # fmt: skip
    total = steps + sum(int(r["steps"]) for r in rounds)
    return f"{total:,} steps fine-tuned" + (f" in {len(rounds) + 1} rounds" if rounds else "") + origin


def _seconds(training: dict[str, object], init: dict[str, object]) -> float:
    """Training time, every fine-tuning round's included (not the base build's)."""
    rounds = [r for r in init.get("rounds") or [] if isinstance(r, dict)]
    return float(training["seconds"]) + sum(float(r.get("seconds") or 0) for r in rounds)  # type: ignore[arg-type]


def _trained(m: ShippedModel) -> str:
    t = m.training
    init = t.get("init") if isinstance(t.get("init"), dict) else {}
    parts = [(_fine_tuned(init, t["steps"]) if init else f"{t['steps']:,} steps")
             if isinstance(t.get("steps"), int) else None,
             f"{_seconds(t, init) / 60:.0f} min" if isinstance(t.get("seconds"), (int, float)) else None,
             f"{t['preset']} preset" if t.get("preset") else None,
             f"on {_tail(str(t['data']))}" if t.get("data") else None]  # fmt: skip
    return ", ".join(p for p in parts if p) or "–"


def _is_default(m: ShippedModel) -> bool:
    return m.family == DEFAULT_FAMILY and m.quality == DEFAULT_QUALITY


@handle_errors
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the index as JSON.")] = False,
) -> None:
    """List the trained models shipped with codec-lab: pass a name to --model.

    Every model is a run folder inside the package. `codec compress` with no --model uses the
    default (marked); --quality 1..4 picks another rate point of its family (1: smallest file),
    and --model FAMILY --quality N one of another family's. bpp, PSNR and MS-SSIM were measured
    with real files when the model was built.

    Examples:
      codec models
      codec compress photo.png -o photo.cdl                     # the default model
      codec compress photo.png -o photo.cdl --quality 1         # smaller file
      codec compress photo.png -o photo.cdl --model admm
    """
    models = load_index()
    if as_json:
        rows = [{**m.to_dict(), "default": _is_default(m), "path": str(m.path)} for m in models]
        out.print_json(json.dumps(rows))
        return
    if not models:
        out.print("No trained models are shipped in this installation.\n"
                  "Train one with `codec build` (e.g. `codec build --rate entropy --out runs/e1`) and pass "
                  "its folder: `codec compress photo.png --model runs/e1`.\nMaintainers add models with "
                  "`python -m codec_lab.registry.ship_model RUN --name NAME --command …` (docs/models.md).",
                  markup=False, highlight=False)  # fmt: skip
        return
    sets = {str(m.metrics.get("set")) for m in models}
    on = "Kodak" if sets == {"Kodak"} else None
    table = Table(title="Shipped models (pass the name to --model)")
    for col, right in (("name", False), ("strategy (rate + coder)", False), ("quality", True),
                       (f"bpp ({on})" if on else "bpp", True), (f"PSNR dB ({on})" if on else "PSNR dB", True),
                       (f"MS-SSIM ({on})" if on else "MS-SSIM", True), ("weights", True),
                       ("trained", False)):  # fmt: skip
        table.add_column(col, justify="right" if right else "left")
    if on is None:
        table.add_column("measured on")
    for m in models:
        me = m.metrics
        row = [m.name + (" (default)" if _is_default(m) else ""), m.strategy,
               "–" if m.quality is None else str(m.quality), _number(me.get("bpp"), ".3f"),
               _number(me.get("psnr"), ".2f"), _number(me.get("ms_ssim"), ".4f"), _size(m.bytes),
               _trained(m)]  # fmt: skip
        if on is None:
            row.append(f"{me.get('set')} ({me.get('images')} images)")
        table.add_row(*row)
    out.print(table)
    where = "Kodak's 24 images" if on else "each model's evaluation images"
    out.print(f"Metrics: means over {where}, measured with real files when the model was built "
              "(bpp = file bytes × 8 / pixels).\n"
              f"No --model: {DEFAULT_FAMILY} at quality {DEFAULT_QUALITY}; --quality 1..4 picks another "
              "point (1: smallest file); --model FAMILY --quality N another family's.\n"
              "Training commands and sources: `codec models --json`, docs/models.md.",
              markup=False, highlight=False)  # fmt: skip
