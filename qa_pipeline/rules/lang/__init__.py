"""The QA lead's language: the pack schema, the loader (specs and problems), lint, fixtures.

Nothing here evaluates a call; the operators (:mod:`..ops`) and the compiled runtime
(:mod:`..runtime`) build on it.
"""
