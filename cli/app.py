"""The root ``codec`` app: global options, and one module per command."""

from __future__ import annotations

import warnings

# Third-party import-time deprecation noise (torch.jit, torch_geometric) is not the user's
# business; filter it before anything imports torch.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch_geometric")

import platform  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from codec_lab.cli import _state  # noqa: E402
from codec_lab.cli._output import handle_errors, out  # noqa: E402
from codec_lab.cli._typer import Command, Group  # noqa: E402
from codec_lab.cli.commands import (  # noqa: E402
    build,
    compare,
    compress,
    compressai_cmd,
    decompress,
    evaluate,
    fit_coder,
    plugins,
)

app = typer.Typer(
    name="codec",
    cls=Group,
    help="codec-lab: compose, train and compare learned image codecs from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_text() -> str:
    """The package and compressed-file format versions, with the libraries that matter."""
    import compressai
    import torch

    import codec_lab
    from codec_lab.corelib.container import FORMAT_VERSION

    return (f"codec-lab {codec_lab.__version__}, compressed-file format {FORMAT_VERSION} "
            f"(torch {torch.__version__}, compressai {compressai.__version__}, "
            f"Python {platform.python_version()})")  # fmt: skip


def _print_version(value: bool) -> None:
    if value:
        out.print(version_text(), highlight=False)
        raise typer.Exit()


@app.callback()
@handle_errors
def root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the codec-lab and file-format versions and exit.")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, envvar="CODEC_THREADS",
        help="CPU threads for torch (default: torch's choice, one per core). On a machine "
             "shared with another torch job, 1 avoids oversubscription: beside one, a training "
             "step measured 9.2 s with the default and 2.5 s with 1 on 2 cores "
             "(python -m bench.threads).")] = None,
) -> None:
    """codec-lab: compose, train and compare learned image codecs from plugins."""
    _state.threads = threads
    if threads is not None:
        from codec_lab.corelib.devices import set_threads

        set_threads(threads)


for _name, _fn, _extra in (
    ("build", build.build, {}),
    ("compare", compare.compare, {}),
    ("compress", compress.compress, {}),
    ("decompress", decompress.decompress, {}),
    ("eval", evaluate.evaluate_cmd, {}),
    ("fit-coder", fit_coder.fit_coder, {}),
    ("plugins", plugins.plugins_cmd, {}),
    ("compressai", compressai_cmd.compressai_cmd,
     {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}),
):  # fmt: skip
    app.command(_name, cls=Command, **_extra)(_fn)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
