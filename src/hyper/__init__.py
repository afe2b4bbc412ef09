"""HyPER routing: shared library of the tagger, ppm, router and rm-trainer services."""
