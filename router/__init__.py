"""The per-service request router: a prefix-, adapter- and load-aware proxy in front of an
InferenceService's replicas, with per-tenant limits and a hold queue for scale from zero.

It imports `infleet.api` and nothing else of infleet (no torch, engine, kopf or
kubernetes client): it runs in its own small image. See docs/router.md.
"""
