"""Tests of the built-in rates."""
