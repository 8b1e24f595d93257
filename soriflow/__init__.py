"""Soriflow: a self-hosted speech-AI pipeline over gRPC."""

__version__ = "0.1.0"
