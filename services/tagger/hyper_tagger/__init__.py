"""Tagger service: per-instance features (textual now; descriptive tags from a tagging LM later)."""
