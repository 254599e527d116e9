"""``codec compressai``: hand a run to CompressAI's own tools, by name."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from codec_lab.cli._options import Force
from codec_lab.cli._output import err, handle_errors, out
from codec_lab.corelib.errors import ConfigError, OutputError
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.registry.compressai_zoo import register_run
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import resolve


def _run_target(args: list[str]) -> None:
    """Run ``-m MODULE ARGS…`` or ``SCRIPT.py ARGS…`` in this process, as ``python`` would."""
    if args[0] == "-m":
        if len(args) < 2:
            raise ConfigError("-m needs a module name", "e.g. -- -m compressai.utils.eval_model …")
        module, rest = args[1], args[2:]
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    script = Path(args[0])
    if not script.is_file():
        raise ConfigError(f"script {script} does not exist",
                          "pass `-m MODULE ARGS…` or `SCRIPT.py ARGS…` after --")  # fmt: skip
    sys.argv = [str(script), *args[1:]]
    runpy.run_path(str(script), run_name="__main__")


@handle_errors
def compressai_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        help="Run folder written by `codec build`, or a shipped model (`codec models`).")],
    name: Annotated[str | None, typer.Option("--name", "-n",
                    help="Name in CompressAI's registries (default: the run folder's name).")] = None,
    export: Annotated[Path | None, typer.Option("--export",
                      help="Also write the weights as a CompressAI checkpoint "
                           "(`{'state_dict': …}`, .pth.tar).")] = None,
    force: Force = False,
) -> None:
    """Register a run in CompressAI's model registries, then run a CompressAI tool with it.

    Everything after `--` is run in this process, as `python` would run it:

        codec compressai runs/e1 --name my-codec --export e1.pth.tar -- \\
            -m compressai.utils.eval_model checkpoint DIR -a my-codec -p e1.pth.tar

    `compressai.zoo.image_models[NAME]` (pretrained=True loads the run's weights),
    `compressai.zoo.image.model_architectures[NAME].from_state_dict` and
    `compressai.registry.MODELS[NAME]` then build the codec. Python code can do the same with
    `codec_lab.registry.compressai_zoo.register_run(RUN, NAME)`.
    """
    if export is not None:
        check_output(export, force)
    run = resolve(model, option="RUN").path  # a shipped model registers under its own name (its folder's)
    used = register_run(run, name)
    err.print(f"Registered {model} in CompressAI as {used!r}.")
    if export is not None:
        codec = load_run(run)
        codec.update()
        try:
            with atomic_output(export, overwrite=force) as tmp:
                torch.save({"state_dict": codec.state_dict()}, tmp)
        except OSError as e:
            raise OutputError(f"cannot write {export}: {e.strerror}", "choose a writable path") from e
        err.print(f"Wrote CompressAI checkpoint {export}.")
    if not ctx.args:
        out.print(f"{used}: registered for this process only; pass a CompressAI command after "
                  "`--` to run it with the codec, e.g.\n"
                  f"  codec compressai {model} --name {used} --export {used}.pth.tar -- "
                  f"-m compressai.utils.eval_model checkpoint IMAGES -a {used} -p {used}.pth.tar")
        return
    _run_target(list(ctx.args))
