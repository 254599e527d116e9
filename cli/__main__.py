"""``python -m codec_lab.cli …``: the ``codec`` command (also what ``torchrun -m`` runs)."""

from codec_lab.cli.app import main

if __name__ == "__main__":
    main()
