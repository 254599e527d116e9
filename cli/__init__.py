"""The ``codec`` command line (Typer). Commands are thin: parse, call, print."""
