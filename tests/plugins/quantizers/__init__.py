"""Tests of the built-in quantizers."""
