"""Atelier: a fashion catalogue explored through its embeddings, and cold-start recommendations on it.

Layers, lowest first (imports only point down; tests/test_layers.py checks it): config, progress, astlock -> cache ->
data -> embeddings -> explore, recs -> serve -> bench -> __main__ (the CLI).
"""
