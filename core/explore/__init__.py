"""Exploring a built catalogue: the 2-D projection, clusters and their names, the cluster map, texture diagnostics and the texture report."""
