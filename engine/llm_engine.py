"""The in-process engine: an `EngineCore` plus the API-side output processing.

The core turns requests into token deltas (engine/core/engine_core.py); this facade turns
those into text deltas (`RequestOutput`: incremental detokenization, stop strings) and
keeps the latency metrics, exactly what the API process does when the core runs in its
own process. `infleet bench`, tests and single-process use drive it with `step()`.
"""

from __future__ import annotations

import logging
import time

from infleet.engine.args import EngineArgs
from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.engine_core import EngineCore
from infleet.engine.core.logits_processors import register_constraint_factory
from infleet.engine.core.runner import ModelRunner
from infleet.engine.core.scheduler import Scheduler
from infleet.engine.loader import LoadedModel
from infleet.engine.messages import AdapterRef, CoreOutputs, CoreRequest, SamplingParams
from infleet.engine.metrics import EngineMetrics
from infleet.engine.server.output_processor import OutputProcessor, RequestOutput
from infleet.engine.structured.constraint import make_constraint

log = logging.getLogger("infleet.engine")


class LLMEngine:
    def __init__(self, args: EngineArgs, loaded: LoadedModel | None = None):
        # Structured outputs: the core builds each request's grammar constraint through
        # this factory (the core itself knows no grammar library).
        register_constraint_factory(make_constraint)
        self.core = EngineCore(args, loaded)
        self.args = args
        self.loaded = self.core.loaded
        self.tokenizer = self.loaded.tokenizer
        self.model_name = self.core.model_name
        self.vocab_size = self.core.vocab_size
        self.num_blocks, self.max_model_len = self.core.num_blocks, self.core.max_model_len
        self.kv_bytes_per_block = self.core.kv_bytes_per_block
        self.metrics = EngineMetrics(self.model_name)
        self.output = OutputProcessor(self.tokenizer, self.metrics)

    # The core's parts, for the CLI banner, benchmarks and tests that look inside.
    @property
    def runner(self) -> ModelRunner:
        return self.core.runner

    @property
    def scheduler(self) -> Scheduler:
        return self.core.scheduler

    @property
    def block_manager(self) -> BlockManager:
        return self.core.block_manager

    # -- requests ---------------------------------------------------------------------

    def validate(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Raise InvalidRequest (HTTP 400) for a request that can never be served."""
        self.core.validate(prompt_token_ids, params)

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        priority: int = 0,
        cache_salt: str = "",
        arrival_time: float | None = None,
        lora: AdapterRef | None = None,
    ) -> None:
        arrival = time.monotonic() if arrival_time is None else arrival_time
        prompt = list(prompt_token_ids)
        self.core.add_request(
            CoreRequest(request_id, prompt, params, priority, cache_salt, arrival, lora)
        )
        self.output.add(request_id, prompt, params, arrival)

    def abort(self, request_id: str) -> None:
        """Drop a request (client gone): its blocks are free when this returns."""
        self.core.abort([request_id])
        self.output.abort(request_id)

    def has_unfinished(self) -> bool:
        return bool(self.output) or self.core.has_unfinished()

    def fail_all(self, what: str) -> list[RequestOutput]:
        """End every request with an error (the step itself broke)."""
        try:
            outputs = self._process(self.core.fail_all(what))
        except Exception:
            log.exception("could not fail requests cleanly")
            outputs = []
        return outputs + self.output.fail_all(what)

    @staticmethod
    def rejected(request_id: str, message: str) -> RequestOutput:
        """The final output of a request that never got to run."""
        return RequestOutput(request_id, "", [], [], True, "error", 0, 0, 0, error=message)

    # -- the step ---------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        return self._process(self.core.step())

    def _process(self, core_outputs: CoreOutputs) -> list[RequestOutput]:
        outputs, to_abort = self.output.process(core_outputs)
        for request_id, index in to_abort:
            self.core.abort([request_id], index=index)
        return outputs

    def record_metrics(self, core_outputs: CoreOutputs | None = None) -> None:
        self.output.record_stats(
            core_outputs.stats if core_outputs is not None else self.core.stats()
        )
