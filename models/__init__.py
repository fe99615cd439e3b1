"""The bundled demo models and the scripts that train them (see models/README.md)."""
