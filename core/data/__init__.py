"""Catalogues: the schema every loader gives, CSV reading, column roles, and the H&M, generic and synthetic loaders."""
