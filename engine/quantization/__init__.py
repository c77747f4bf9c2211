"""Quantized weight formats of the linear layer: FP8 (W8A8) and NVFP4 (W4A16).

`fp8.py` and `fp4.py` hold the numerics (quantize, pack, the GEMM's CPU reference and its
dispatch to the CUDA kernels in engine/kernels/); the checkpoint formats that carry such
weights are read in `checkpoint.py`.
"""
