"""LoRA adapters: format and validation (torch-free) and batched LoRA math."""
