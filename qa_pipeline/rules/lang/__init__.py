"""The QA lead's language: the operator registry, the pack schema (its conditions derived
from the registry), the reader (YAML -> specs and problems), labels, each rule's spec lint.

The bottom layer of :mod:`qa_pipeline.rules`: nothing here compiles a rule or evaluates a
call, and nothing here imports the operators (:mod:`..ops`), the runtime (:mod:`..runtime`)
or the pack compiler (:mod:`..pack`), which build on it.
"""
