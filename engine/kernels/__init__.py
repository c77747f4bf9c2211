"""Triton kernels for the engine's CUDA path, each defined by a pure-torch reference.

`reference.py` holds the references (tests compare every kernel against them; the torch
attention path uses the FP8 helpers in `fp8.py`). Triton compiles only for a GPU: on a
machine without CUDA the only way these kernels can run at all is Triton's interpreter
(CPU tensors, slow), so importing this package there switches it on, with the GPU's
rounding (interpreter.py). That is how CI checks the kernels; the engine itself never
picks Triton on CPU (`--attention-backend auto` chooses torch there).
"""

from __future__ import annotations

import torch

from infleet.engine.kernels.interpreter import enable_interpreter, match_gpu_semantics

if not torch.cuda.is_available():
    enable_interpreter()  # before `import triton`

import triton

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)
if INTERPRETED:
    match_gpu_semantics()
