"""`infleet serve`: check the flags and the model, then serve the OpenAI API until SIGTERM.

The model itself loads in the engine core's own process (engine/server/run.py)."""

from __future__ import annotations

import asyncio
import logging
import sys

from infleet.engine.args import parse_args

log = logging.getLogger("infleet.engine")


def serve_main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.node_rank > 0:
        # Another node of a multi-node replica: its ranks only, no API (the leader serves).
        from infleet.engine.distributed.degrees import ParallelConfigError
        from infleet.engine.distributed.launch import run_worker_node

        try:
            return run_worker_node(args)
        except ParallelConfigError as err:
            print(f"infleet serve: {err}", file=sys.stderr)
            return 2
    # Imported after parsing so that `--help` and flag errors do not wait for torch.
    from infleet.engine.loader import load_tokenizer
    from infleet.engine.model_config import ModelLoadError
    from infleet.engine.server.auth import Keys
    from infleet.engine.server.generation_config import read_generation_defaults
    from infleet.engine.server.run import serve
    from infleet.engine.termination import write_termination_message

    try:  # a bad keys file fails here, before minutes of model loading
        Keys.from_flags(args.api_key, args.api_keys_file, args.admin_api_key)
    except (OSError, ValueError) as err:
        print(f"infleet serve: --api-keys-file: {err}", file=sys.stderr)
        return 2
    try:
        defaults = read_generation_defaults(args.model, args.generation_config)
        load_tokenizer(args.model)  # a missing model is a clear message here, not in the core
    except (ModelLoadError, ValueError) as err:
        # One line, also where the operator reads it: exit code 2 means "refused".
        line = f"infleet serve: {err}"
        print(line, file=sys.stderr)
        write_termination_message(line)
        return 2
    if defaults:
        log.info("sampling defaults from generation_config.json: %s", defaults)
    return asyncio.run(serve(args))
