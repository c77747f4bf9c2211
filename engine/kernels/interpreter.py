"""Running the kernels in Triton's CPU interpreter, with the GPU's rounding.

The interpreter is how CI checks the kernels on machines without a GPU. Triton 3.9's
interpreter differs from the GPU in two places that matter here, so we correct them when
it runs (GPU runs never touch this module):
- float downcasts: fp32 -> bf16 truncates instead of rounding to nearest even, and
  fp32 -> fp8 e4m3 drops the carry when rounding up crosses a power of two (7.96 -> 4);
- `tl.dot` on bf16 operands multiplies their raw 16-bit patterns as integers.
Both are replaced by conversions through torch, which rounds to nearest even and
saturates fp8 exactly as the GPU's `cvt.rn.satfinite` does. The interpreter also checks
every int32 add and multiply for overflow, which the GPU does not do; at test sizes no
index comes near 2^31 (large offsets are int64 in the kernels), so the check proves
nothing there and costs a third of the run time: it is turned off.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import torch


def enable_interpreter() -> None:
    """TRITON_INTERPRET must be set before `import triton`: triton.language's own helpers
    (tl.max, tl.sum, tl.cdiv) are @jit functions decided when triton is imported. If
    something imported triton earlier on this CUDA-less machine, import it afresh; its
    compiled mode could not have run anything here anyway."""
    os.environ.setdefault("TRITON_INTERPRET", "1")
    if "triton" in sys.modules and not sys.modules["triton"].knobs.runtime.interpret:
        for name in [n for n in sys.modules if n == "triton" or n.startswith("triton.")]:
            del sys.modules[name]


def match_gpu_semantics() -> None:
    """Called by each kernel module after `import triton`; a no-op unless interpreting."""
    import triton
    import triton.language as tl
    from triton.runtime import interpreter

    if not triton.knobs.runtime.interpret or getattr(interpreter, "_infleet_fixed", False):
        return
    torch_dtypes = {
        tl.float32: torch.float32,
        tl.float16: torch.float16,
        tl.bfloat16: torch.bfloat16,
        tl.float8e4nv: torch.float8_e4m3fn,
        tl.float8e5: torch.float8_e5m2,
    }
    bits = {8: torch.int8, 16: torch.int16, 32: torch.int32}
    original_convert = interpreter._convert_float

    def convert_float(data, input_dtype, output_dtype, rounding_mode):
        src, dst = torch_dtypes.get(input_dtype), torch_dtypes.get(output_dtype)
        if src is None or dst is None:
            return original_convert(data, input_dtype, output_dtype, rounding_mode)
        width_in, width_out = input_dtype.primitive_bitwidth, output_dtype.primitive_bitwidth
        raw = np.ascontiguousarray(data).view(getattr(np, f"int{width_in}"))
        value = torch.from_numpy(raw).view(src).to(dst)
        return value.view(bits[width_out]).numpy().view(getattr(np, f"uint{width_out}"))

    original_dot = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar == tl.bfloat16:
            a = self.cast_impl(a, tl.float32)
        if b.dtype.scalar == tl.bfloat16:
            b = self.cast_impl(b, tl.float32)
        return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    original_init = interpreter.InterpreterBuilder.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.options = dataclasses.replace(self.options, sanitize_overflow=False)

    interpreter._convert_float = convert_float
    interpreter.InterpreterBuilder.create_dot = create_dot
    interpreter.InterpreterBuilder.__init__ = init
    interpreter._infleet_fixed = True
