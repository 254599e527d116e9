"""Code the entropy coders share (arithmetic-coding back ends, binarization, masked
convolutions). Only modules of ``plugins/coders/`` import from here."""
