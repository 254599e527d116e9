"""One module per ``codec`` command."""
