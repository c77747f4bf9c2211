"""`infleet serve`: load the model, then serve the OpenAI API until SIGTERM."""

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
    # Imported after parsing so that `--help` and flag errors do not wait for torch.
    from infleet.engine.llm_engine import LLMEngine
    from infleet.engine.model_config import ModelLoadError
    from infleet.engine.server.auth import Keys
    from infleet.engine.server.run import serve

    try:  # a bad keys file fails here, before minutes of model loading
        Keys.from_flags(args.api_key, args.api_keys_file, args.admin_api_key)
    except (OSError, ValueError) as err:
        print(f"infleet serve: --api-keys-file: {err}", file=sys.stderr)
        return 2
    try:
        engine = LLMEngine(args)
    except (ModelLoadError, ValueError) as err:
        print(f"infleet serve: {err}", file=sys.stderr)
        return 2
    log.info(
        "model %s (served as %r) on %s, dtype %s, attention %s",
        args.model,
        engine.model_name,
        engine.loaded.device,
        str(engine.loaded.dtype).removeprefix("torch."),
        engine.runner.backend.name,
    )
    log.info(
        "KV cache: %d blocks of %d tokens (%.0f MiB, %d tokens); max model len %d",
        engine.num_blocks,
        args.block_size,
        engine.num_blocks * engine.kv_bytes_per_block / 2**20,
        engine.num_blocks * args.block_size,
        engine.max_model_len,
    )
    return asyncio.run(serve(engine, args))
