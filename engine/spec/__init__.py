"""Speculative decoding: proposers (n-gram, draft model, self-draft), exact verification,
the load switch (docs/engine.md, "Speculative decoding")."""
