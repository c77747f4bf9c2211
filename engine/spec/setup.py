"""Build the engine core's speculation from its arguments (None when it is off)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infleet.engine.spec.decoding import SpecDecoder

if TYPE_CHECKING:
    from infleet.engine.args import EngineArgs
    from infleet.engine.core.runner import ModelRunner
    from infleet.engine.loader import LoadedModel


def build_spec_decoder(
    args: EngineArgs, loaded: LoadedModel, runner: ModelRunner
) -> SpecDecoder | None:
    config = args.speculative_config
    if config is None:
        return None
    drafter = None
    if config.method != "ngram":
        from infleet.engine.spec.draft import build_drafter

        drafter = build_drafter(config, args, loaded, runner)
    return SpecDecoder(config, loaded.device.type, drafter)
