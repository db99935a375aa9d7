"""Catalogues: the schema every loader gives (catalog), column roles, CSV reading, and the H&M, generic and synthetic loaders."""
