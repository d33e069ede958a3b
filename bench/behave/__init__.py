"""Behavioural testing (CheckList-style): suites as YAML data, seeded expansion, a run kind.

``bench.behave.spec`` reads and checks suites, ``bench.behave.expand`` turns them into test
cases, ``bench.behave.runner`` runs them through the engine (``behave`` runs, stored like every
other run). See docs/audits.md for the suite format.
"""
