"""Sweeps on Ray Tune: sweep files, search adapters, the worker side of a trial, the driver, its callbacks."""
