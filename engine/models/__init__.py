"""Model definitions: one decoder for every supported architecture (see decoder.py)."""

from __future__ import annotations

import torch

from infleet.engine.model_config import ModelConfig
from infleet.engine.models.decoder import CausalLM
from infleet.engine.models.weights import load_weights


def build_model(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> CausalLM:
    """An uninitialised model on `device` in `dtype`; fill it with `load_weights`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = CausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


__all__ = ["CausalLM", "build_model", "load_weights"]
