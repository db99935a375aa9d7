"""Makes the project root importable (``import core``) for pytest."""
