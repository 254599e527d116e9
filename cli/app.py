"""The root ``codec`` app: mounts one module per command."""

from __future__ import annotations

import warnings

# Third-party import-time deprecation noise (torch.jit, torch_geometric) is not the user's
# business; filter it before anything imports torch.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch_geometric")

import typer  # noqa: E402

from cli.commands import build, compress, compressai_cmd, decompress, evaluate, plugins  # noqa: E402

app = typer.Typer(
    name="codec",
    help="codec-lab: compose, train and compare learned image codecs from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("build")(build.build)
app.command("compress")(compress.compress)
app.command("decompress")(decompress.decompress)
app.command("eval")(evaluate.evaluate_cmd)
app.command("plugins")(plugins.plugins_cmd)
app.command(
    "compressai",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(compressai_cmd.compressai_cmd)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
