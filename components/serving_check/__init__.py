"""Loads the candidate model in a fresh process and queries it before it may be pushed."""
