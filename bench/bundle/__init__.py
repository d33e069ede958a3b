"""Submission bundles: a model's runs as a verifiable zip (issue 14).

``bench submit`` writes one (:mod:`bench.bundle.build`): a canonical JSON manifest
(:mod:`bench.bundle.manifest`, published as ``docs/bundle-manifest.schema.json``) with the model's
identity and card, every task's spec and data hash, every run's key parts, settings and metrics
with CIs; the per-example rows as canonical JSON lines (:mod:`bench.bundle.rows`) under a Merkle
tree (:mod:`bench.bundle.merkle`); the SHA-256 of every file; and exports for other tools
(:mod:`bench.bundle.interop`). ``bench validate`` checks one without trusting its submitter
(:mod:`bench.bundle.validate`, and :mod:`bench.bundle.rescore` to recompute sampled examples
with the named model); ``bench import`` stores verified ones with their provenance
(:mod:`bench.bundle.importer`). Bundles are data: read into memory within limits
(:mod:`bench.bundle.zipio`), parsed, never executed. See ``docs/submissions.md``.
"""
