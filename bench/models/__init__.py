"""Model adapters: loading sequence classifiers, batching, label alignment and model identity.

Submodules are imported directly (``from bench.models.classifier import HFClassifier``) so that
importing this package never imports torch; ``batching``, ``labels`` and ``identity`` are
torch-free and cheap.
"""
