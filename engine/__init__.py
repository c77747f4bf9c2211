"""The bundled inference engine."""
