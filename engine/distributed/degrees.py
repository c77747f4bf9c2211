"""Which parallel degrees a model and a launch accept (pure): each refusal names the
numbers, so `infleet serve` can print it and exit 2 before any rank starts.
"""

from __future__ import annotations

from infleet.engine.model_config import ModelConfig


class ParallelConfigError(ValueError):
    """Degrees that cannot shard this model, or a multi-node launch that does not add up."""


def check_launch(tp: int, pp: int, nnodes: int, node_rank: int) -> None:
    if pp < 1 or tp < 1:
        raise ParallelConfigError(
            f"--tensor-parallel-size {tp} and --pipeline-parallel-size {pp} must be >= 1"
        )
    world = tp * pp
    if not 0 <= node_rank < nnodes:
        raise ParallelConfigError(f"--node-rank {node_rank} is outside 0..{nnodes - 1}")
    if world % nnodes:
        raise ParallelConfigError(
            f"{world} ranks (--tensor-parallel-size {tp} x --pipeline-parallel-size {pp}) do "
            f"not divide over --nnodes {nnodes}"
        )


def check_features(tp: int, pp: int, *, lora: bool, speculative: bool, kv_tiers: bool) -> None:
    """Engine features whose per-step state does not reach the other ranks yet (the step
    inputs broadcast in engine/distributed/launch.py carry no adapter layout and no draft
    positions, and the KV tiers would hold rank 0's heads or layers only)."""
    if tp * pp == 1:
        return
    degree = f"--tensor-parallel-size {tp}" if pp == 1 else f"--pipeline-parallel-size {pp}"
    for on, name in [
        (lora, "--enable-lora"),
        (speculative, "--speculative-config"),
        (kv_tiers, "--kv-dram-size/--kv-nvme-size"),
    ]:
        if on:
            raise ParallelConfigError(f"{name} with {degree} is not supported yet (one rank only)")


def check_model(config: ModelConfig, tp: int, pp: int, expert_parallel: bool) -> None:
    """Raise ParallelConfigError naming the first size that does not shard."""
    problems = []
    if config.num_heads % tp:
        problems.append(f"{config.num_heads} attention heads")
    kv = config.num_kv_heads
    if kv % tp and tp % kv:
        problems.append(f"{kv} KV heads (need a multiple or a divisor of the degree)")
    if config.intermediate_size % tp:
        problems.append(f"intermediate_size {config.intermediate_size}")
    moe = config.moe
    if moe is not None:
        if expert_parallel and moe.num_experts % tp:
            problems.append(f"{moe.num_experts} experts (--enable-expert-parallel)")
        if not expert_parallel and moe.intermediate_size % tp:
            problems.append(f"expert intermediate_size {moe.intermediate_size}")
        if moe.shared_intermediate_size % tp:
            problems.append(f"shared expert intermediate_size {moe.shared_intermediate_size}")
    if problems:
        raise ParallelConfigError(
            f"--tensor-parallel-size {tp} does not divide the model's {', '.join(problems)}"
        )
    if config.num_layers % pp:
        raise ParallelConfigError(
            f"--pipeline-parallel-size {pp} does not divide the model's {config.num_layers} layers"
        )
    if pp > 1 and tp > 1:
        raise ParallelConfigError(
            f"--pipeline-parallel-size {pp} with --tensor-parallel-size {tp}: the bundled "
            "engine runs one of them at a time (use vLLM / SGLang for TP x PP)"
        )
    if expert_parallel and moe is None:
        raise ParallelConfigError(
            f"--enable-expert-parallel: {config.architecture} is a dense model (no experts)"
        )
