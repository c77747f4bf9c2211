"""Structured outputs: request fields -> a StructuredSpec (request.py, API side) -> a
per-request grammar constraint over the token bitmask (constraint.py, core side)."""
