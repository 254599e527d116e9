"""What the root ``codec`` options set, for the commands that run after them."""

from __future__ import annotations

threads: int | None = None
"""``--threads`` / ``CODEC_THREADS``, or None when torch chooses."""
