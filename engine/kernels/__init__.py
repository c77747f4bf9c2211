"""Triton kernels for the engine's CUDA path, each defined by a pure-torch reference.

`reference.py` holds the references (tests compare every kernel against them; the torch
attention path uses the FP8 helpers in `fp8.py`). Triton compiles only for a GPU: on a
machine without CUDA the only way these kernels can run at all is Triton's interpreter
(CPU tensors, slow), so importing this package there switches it on (interpreter.py);
each kernel module then gives the interpreter the GPU's rounding. That is how CI checks
the kernels; the engine itself never picks Triton on CPU. Importing this package does
not import triton: the torch path (fp8.py) works where triton is not installed.
"""

from __future__ import annotations

import torch

from infleet.engine.kernels.interpreter import enable_interpreter

if not torch.cuda.is_available():
    enable_interpreter()  # before anything imports triton
