"""qa-pipeline: real-time speech quality assurance for Mandarin call centres."""

__version__ = "0.1.0"
