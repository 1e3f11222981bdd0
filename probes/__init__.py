"""Probe kinds, one module per kind, the contract they fulfil (:mod:`probes.base`), their shared
machinery (:mod:`probes.support`) and the explicit registry of kinds (:mod:`probes.registry`).

The registry lives in its own module, not here: importing any part of this package (the secret
masker, the duration grammar) must not load every probe kind and its dependencies.
"""
