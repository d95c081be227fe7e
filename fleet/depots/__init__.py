"""Depots (车场): where trucks start and end the day."""
