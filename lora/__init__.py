"""Multi-LoRA serving: PEFT adapters checked against a base model, cached, and applied to
tokens of many adapters in one batched forward.

Two halves, so the operator (no torch) can validate adapters too:
- torch-free: `errors`, `base_model` (the shape of the base model's linear layers, which
  the engine describes), `adapter_config`, `safetensors_header`, `manifest` (an adapter's
  tensors checked against the base), `lora_dir`, `admission` (the scheduling rule),
  `cache` (device slots + host LRU bookkeeping), `metrics`;
- torch, engine side only: `host_weights`, `slots`, `batch`, `punica_torch`,
  `punica_triton` (CUDA) and `apply` (the per-token hook the engine's linear layer calls).

This package never imports the engine; the engine imports it. Importing
`infleet.lora` itself imports nothing.
"""
