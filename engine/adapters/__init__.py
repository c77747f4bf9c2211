"""The adapters an engine serves, API side: the set read at start-up, `--lora-modules`,
the load/unload API, the model list and which adapter a request's `model` names
(docs/lora-onboarding.md). The core applies them: engine/core/lora_state.py."""
