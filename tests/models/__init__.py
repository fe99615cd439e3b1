"""Tests of the bundled demo models (models/) and the GGUF converter."""
