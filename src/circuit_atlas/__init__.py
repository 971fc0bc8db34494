"""circuit-atlas: find and track LLM circuits across training checkpoints and model scale."""

__version__ = "0.1.0"
