"""The adapters an engine serves: the set read at start-up, the load/unload API, the
model list (docs/lora-onboarding.md). Applying them to tokens is lora/'s batched math,
wired into the engine's linear layers by issue 14 phase 2."""
