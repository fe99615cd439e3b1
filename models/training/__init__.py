"""Rebuild the bundled demo models: `python -m models.training` (GPU), then `.evaluate` (CPU)."""
