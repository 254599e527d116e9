"""Tests of the built-in transforms."""
