"""Benchmarks (`make bench`): each compares against its reference in the same run and prints a ratio."""
