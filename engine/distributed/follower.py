"""A rank that follows rank 0: `python -m infleet.engine.distributed.follower RANK PORT`,
the EngineArgs (msgpack) on stdin.

It loads its shard of the model, sizes its KV pool as rank 0 says, then runs each step
rank 0 broadcasts (engine/distributed/launch.py) until told to stop. Any failure exits
non-zero, which ends the replica: rank 0 (or the node's launcher) watches this process.
"""

from __future__ import annotations

import logging
import signal
import sys

import msgspec
import torch.distributed as dist

from infleet.engine.args import EngineArgs
from infleet.engine.server.core_proc import _die_with_parent


def follow(args: EngineArgs, rank: int, port: int) -> None:
    from infleet.engine.core.kv_sizing import resolve_kv_pool
    from infleet.engine.core.runner import ModelRunner
    from infleet.engine.distributed.launch import (
        agree_num_blocks,
        broadcast,
        join,
        log_weight_bytes,
        to_device,
    )  # fmt: skip
    from infleet.engine.loader import load_model

    join(args, rank, port)
    loaded = load_model(
        args.model, device=args.device, dtype=args.dtype, quantization=args.quantization
    )
    log_weight_bytes(rank, loaded.model)
    num_blocks = agree_num_blocks(resolve_kv_pool(args, loaded).num_blocks, loaded.device)
    runner = ModelRunner(
        loaded, num_blocks=num_blocks, block_size=args.block_size,
        kv_cache_dtype=args.kv_cache_dtype, attention_backend=args.attention_backend,
        cuda_graph_max_batch=0,
    )  # fmt: skip
    while True:
        message = broadcast(None)
        if message[0] == "run":
            _, input_ids, ctx = message
            runner.run(input_ids.to(runner.device), to_device(ctx, runner.device))
        elif message[0] == "copy":
            runner.copy_block(message[1], message[2])
        else:
            break


def main(argv: list[str]) -> int:
    _die_with_parent()
    # As the core: a Ctrl-C reaches the whole process group; rank 0 decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    rank, port = int(argv[0]), int(argv[1])
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s (rank {rank}): %(message)s",
    )
    args = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=EngineArgs)
    try:
        follow(args, rank, port)
    except Exception:  # any failure ends the replica, with its traceback in the log
        logging.getLogger("infleet.engine").exception("rank %d failed", rank)
        return 1
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
