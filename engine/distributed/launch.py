"""The ranks of one replica: rank 0 (the engine core, which schedules) spawns the other
ranks of its node, joins the process group with them, broadcasts each step's inputs and
supervises them; on another node `infleet serve --node-rank N` spawns that node's ranks.

Ranks follow rank 0 step by step (engine/distributed/follower.py): every rank runs the
same forward on the same inputs, so the collectives inside the model line up. A rank
that exits takes the whole replica down: rank 0 logs it and exits 1 (the API process
then fails its in-flight requests, reports not-ready and exits non-zero), and every
spawned rank dies with its parent (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import msgspec
import torch
import torch.distributed as dist

from infleet.engine.args import EngineArgs
from infleet.engine.attention import AttentionContext
from infleet.engine.distributed.degrees import check_features, check_launch, check_model
from infleet.engine.distributed.state import (
    PPState,
    TPState,
    init_process_group,
    set_pp,
    set_tp,
)

if TYPE_CHECKING:
    from infleet.engine.core.runner import ModelRunner

log = logging.getLogger("infleet.engine")
MULTI_NODE_PORT = 29500


def world_size(args: EngineArgs) -> int:
    return args.tensor_parallel_size * args.pipeline_parallel_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendezvous_port(args: EngineArgs) -> int:
    if args.master_port is not None:
        return args.master_port
    return _free_port() if args.nnodes == 1 else MULTI_NODE_PORT


def threads_per_rank(args: EngineArgs) -> int:
    """CPU threads for one rank: the cores shared out among this node's ranks."""
    return max(1, (os.cpu_count() or 1) // (world_size(args) // args.nnodes))


def spawn_rank(args: EngineArgs, rank: int, port: int) -> subprocess.Popen[bytes]:
    """One follower process; its settings travel on stdin (API keys never reach argv)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "infleet.engine.distributed.follower", str(rank), str(port)],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(msgspec.msgpack.encode(args))
    proc.stdin.close()
    return proc


def check_degrees(args: EngineArgs) -> None:
    """The launch and the model's shapes, before any rank starts (ParallelConfigError)."""
    from infleet.engine.loader import load_config

    check_launch(
        args.tensor_parallel_size, args.pipeline_parallel_size, args.nnodes, args.node_rank
    )
    check_features(
        args.tensor_parallel_size,
        args.pipeline_parallel_size,
        lora=args.enable_lora,
        speculative=args.speculative_config is not None,
        kv_tiers=bool(args.kv_dram_size or args.kv_nvme_size),
    )
    check_model(
        load_config(args.model),
        args.tensor_parallel_size,
        args.pipeline_parallel_size,
        args.enable_expert_parallel,
    )


def join(args: EngineArgs, rank: int, port: int) -> None:
    """Enter the process group as `rank` and set this process's tensor-parallel place and
    pipeline stage."""
    from infleet.engine.loader import resolve_device

    torch.set_num_threads(threads_per_rank(args))
    device = resolve_device(args.device)
    if device.type == "cuda":  # one GPU per rank of this node; NCCL needs it current
        torch.cuda.set_device(rank % (world_size(args) // args.nnodes))
    init_process_group(rank, world_size(args), args.master_addr, port, device)
    tp = args.tensor_parallel_size
    set_tp(TPState(rank % tp, tp, args.enable_expert_parallel))
    set_pp(PPState(rank // tp, args.pipeline_parallel_size))


def log_weight_bytes(rank: int, model: torch.nn.Module) -> None:
    """One line per rank: the bytes of its parameters (its shard, replicated norms)."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    log.info("rank %d holds %d weight bytes", rank, size)


def agree_num_blocks(num_blocks: int, device: torch.device) -> int:
    """The KV pool every rank can hold: the smallest any rank sized (on CUDA each rank
    profiles its own device; the ranks' profiling forwards run in step)."""
    count = torch.tensor([num_blocks], dtype=torch.int64, device=device)
    dist.all_reduce(count, op=dist.ReduceOp.MIN)
    return int(count.item())


def broadcast(message: object) -> object:
    """Rank 0's `message` on every rank (others pass None)."""
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def to_device(ctx: AttentionContext, device: torch.device) -> AttentionContext:
    """A context whose tensors live on `device` (steps travel between ranks on the host)."""
    moved = {
        f.name: getattr(ctx, f.name).to(device)
        for f in dataclasses.fields(ctx)
        if isinstance(getattr(ctx, f.name), torch.Tensor)
    }
    return dataclasses.replace(ctx, **moved)


class RankGroup:
    """Rank 0's side: started before the model loads (layers read their shard from it)."""

    def __init__(self, args: EngineArgs) -> None:
        check_degrees(args)
        self.args = args
        self.stopping = False
        port = rendezvous_port(args)
        per_node = world_size(args) // args.nnodes
        self.procs = [spawn_rank(args, rank, port) for rank in range(1, per_node)]
        join(args, 0, port)
        threading.Thread(target=self._watch, name="infleet-ranks", daemon=True).start()

    def _watch(self) -> None:
        """A local rank that exits while serving ends the replica: exit now, non-zero."""
        while not self.stopping:
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code is not None and not self.stopping:
                    log.error("rank %d exited with %s: the replica stops", rank, code)
                    os._exit(1)
            time.sleep(0.2)

    def lead(self, runner: ModelRunner) -> LeaderRunner:
        log_weight_bytes(0, runner.model)
        return LeaderRunner(runner, self)

    def stop(self) -> None:
        self.stopping = True
        broadcast(("stop",))
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        dist.destroy_process_group()


class LeaderRunner:
    """Rank 0's ModelRunner: each device-side call is broadcast to the followers first."""

    def __init__(self, runner: ModelRunner, group: RankGroup) -> None:
        self._runner = runner
        self.group = group

    def __getattr__(self, name: str) -> object:
        return getattr(self._runner, name)

    def run(
        self,
        input_ids: torch.Tensor,
        ctx: AttentionContext,
        num_logits: list[int] | None = None,
        lora: object = None,
    ) -> torch.Tensor:
        # check_features keeps speculation and LoRA off with several ranks.
        assert num_logits is None and lora is None, "not broadcast to the followers"
        broadcast(("run", input_ids.cpu(), to_device(ctx, torch.device("cpu"))))
        return self._runner.run(input_ids, ctx)

    def copy_block(self, src: int, dst: int) -> None:
        broadcast(("copy", src, dst))
        self._runner.copy_block(src, dst)

    def forward(self, batch: list) -> torch.Tensor:
        return self.run(*self._runner.prepare(batch))


def run_worker_node(args: EngineArgs) -> int:
    """`infleet serve --node-rank N` (N > 0): this node's ranks, until one exits. Exit 0
    only when all end cleanly (rank 0 stopped them)."""
    check_degrees(args)
    per_node = world_size(args) // args.nnodes
    port = rendezvous_port(args)
    first = args.node_rank * per_node
    procs = [spawn_rank(args, rank, port) for rank in range(first, first + per_node)]
    codes: list[int] = []
    while len(codes) < len(procs):
        for proc in procs:
            code = proc.poll()
            if code is not None and code != 0:
                log.error("rank exited with %s: stopping this node's ranks", code)
                for other in procs:
                    other.kill()
                return 1
        codes = [c for c in (p.poll() for p in procs) if c is not None]
        time.sleep(0.2)
    return 0
