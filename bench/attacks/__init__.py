"""Adversarial attack suites (TextAttack) against the harness's classifiers.

Importing this package is cheap; TextAttack itself is imported (through ``bench.attacks.compat``)
only when an attack is built.
"""
