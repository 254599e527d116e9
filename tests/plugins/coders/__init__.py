"""Tests of the built-in coders."""
