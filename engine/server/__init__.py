"""The OpenAI-compatible HTTP server of the bundled engine."""
