"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are the
hooks below. Built-in components register through exactly these hooks, so a third-party
package does what the built-ins do: expose a module in the ``codec.plugins`` entry-point
group (or name it in ``CODEC_PLUGINS``) and implement one or more ``codec_register_*``
hooks::

    from codec_lab import hookimpl

    @hookimpl
    def codec_register_rates():
        return [MyRate]

A plugin that fails to import, is not valid or whose hook raises is skipped with a warning
naming it (the rest of codec-lab works without it); so is a component of one that breaks a
registration rule. A module that implements no hook (functions without ``@hookimpl``) is
warned about too. At run time, what a component returns is checked where it is cheap (types,
dtypes, shapes), and an exception raised in a plugin's code is reported as that plugin's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from codec_lab.corelib.contracts import Baseline, Decoder, Encoder, EntropyCoder, Quantizer, Rate

from codec_lab import PROJECT, hookimpl  # noqa: F401  (re-exported: the marker plugins use)

hookspec = pluggy.HookspecMarker(PROJECT)

# ---------------------------------------------------------------- component registration


@hookspec
def codec_register_encoders() -> list[type[Encoder]]:
    """Return encoder classes (subclasses of ``codec_lab.corelib.contracts.Encoder``) to register.

    Each class needs ``name`` (kebab-case, unique among encoders), ``summary`` and
    ``version``; its constructor keywords are its config keys.

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated. A name registered twice
    is a startup error naming both plugins.
    Since: 0.1
    """


@hookspec
def codec_register_decoders() -> list[type[Decoder]]:
    """Return decoder classes (subclasses of ``codec_lab.corelib.contracts.Decoder``) to register.

    A decoder that pairs with an encoder takes the same ``name``; the builder then gives
    it the encoder's architecture keys and ``latent_channels``.

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated.
    Since: 0.1
    """


@hookspec
def codec_register_quantizers() -> list[type[Quantizer]]:
    """Return quantizer classes (subclasses of ``codec_lab.corelib.contracts.Quantizer``) to register.

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated.
    Since: 0.1
    """


@hookspec
def codec_register_rates() -> list[type[Rate]]:
    """Return rate classes (subclasses of ``codec_lab.corelib.contracts.Rate``) to register.

    A rate plugin's ``default_components`` say what ``codec build --rate NAME`` composes
    when the user names no other component.

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated.
    Since: 0.1
    """


@hookspec
def codec_register_coders() -> list[type[EntropyCoder]]:
    """Return entropy-coder classes (subclasses of ``codec_lab.corelib.contracts.EntropyCoder``).

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated.
    Since: 0.1
    """


# ---------------------------------------------------------------- baselines (classical codecs)


@hookspec
def codec_register_baselines() -> list[type[Baseline]]:
    """Return baseline classes (subclasses of ``codec_lab.contracts.Baseline``) to register.

    A baseline is a classical codec (JPEG, WebP, …) measured beside ours with real files:
    ``encode`` returns a file's bytes, bpp is measured from them, and quality on ``decode``
    of the file read back. Each class needs ``name`` (kebab-case, unique among baselines),
    ``summary``, ``version``, its ``setting`` column with ``sweep``, ``low`` and ``high``, and
    ``suffix``; it is constructed without arguments. A baseline whose library is missing
    still registers: its ``unavailable()`` reason is shown by ``codec plugins`` and given when
    it is asked for.

    Returns: a list of classes (may be empty).
    All implementations are called; the lists are concatenated. A name registered twice
    is a startup error naming both plugins.
    Since: 0.1
    """


# ---------------------------------------------------------------- command line


@hookspec
def codec_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``codec`` command line.

    Called once by the ``codec`` console script after its own commands are added, with
    its root ``typer.Typer`` app::

        @hookimpl
        def codec_register_commands(app):
            @app.command("hello")
            def hello(name: str = "world") -> None:
                print(f"hello {name}")

    Use ``app.command(...)`` or ``app.add_typer(...)``. A command is wrapped like codec-lab's
    own: a ``codec_lab.errors`` error (a ``CodecError``) prints as one ``Error:`` line with
    its hint; any other exception is reported as the plugin's, with ``CODEC_DEBUG=1`` for the
    traceback. A command (or group) whose name a built-in command or an earlier plugin
    already uses is refused with a warning; so is replacing the app's callback. If the hook
    raises, the plugin's commands are left out with a warning.

    Returns: nothing.
    All implementations are called, in registration order.
    Since: 0.1
    """
