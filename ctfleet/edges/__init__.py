"""Thin edges: the only modules that touch the environment, files outside the repo, or the network."""
