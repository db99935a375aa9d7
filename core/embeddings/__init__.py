"""Embeddings of every product: backbones (open_clip, offline-lit), featurisation, fine-tuning, the vector index, the texture embedding and the build pipeline."""
