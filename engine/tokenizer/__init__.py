"""The engine's tokenizer: a `tokenizers.Tokenizer` plus special-token ids and a chat template.

Built from an HF directory (`from_hf_dir`) or from a GGUF vocabulary (`from_gguf.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tokenizers

from infleet.engine.model_config import ModelLoadError
from infleet.engine.tokenizer.chat_template import ChatTemplateError, render_chat


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None,
        eos_token: str | None,
        eos_token_ids: set[int],
        chat_template: str | None,
    ) -> None:
        self.backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_token_id = backend.token_to_id(bos_token) if bos_token else None
        eos_id = backend.token_to_id(eos_token) if eos_token else None
        self.eos_token_ids = set(eos_token_ids) | ({eos_id} if eos_id is not None else set())
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # encode_batch releases the GIL while it works (encode holds it): a long prompt
        # tokenized in the server's worker thread then never stalls the event loop.
        return self.backend.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        """The prompt text for `messages`; encode it with add_special_tokens=False, since
        templates write their own BOS."""
        if not self.chat_template:
            raise ChatTemplateError("this model has no chat template; use /v1/completions")
        return render_chat(
            self.chat_template,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **extra,
        )

    @classmethod
    def from_hf_dir(cls, path: Path, extra_eos_ids: set[int]) -> Tokenizer:
        if not (path / "tokenizer.json").is_file():
            raise ModelLoadError(
                f"{path} has no tokenizer.json (only fast-tokenizer files are supported)"
            )
        backend = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        cfg = _read_json(path / "tokenizer_config.json")
        return cls(
            backend,
            bos_token=_token_text(cfg.get("bos_token")),
            eos_token=_token_text(cfg.get("eos_token")),
            eos_token_ids=extra_eos_ids,
            chat_template=_chat_template(path, cfg),
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _token_text(token: Any) -> str | None:
    """tokenizer_config stores special tokens as text or as a serialized AddedToken."""
    return token.get("content") if isinstance(token, dict) else token


def _chat_template(path: Path, cfg: dict[str, Any]) -> str | None:
    # Newer transformers save the template beside the config; older ones inside it.
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    template = _read_json(path / "chat_template.json").get(
        "chat_template", cfg.get("chat_template")
    )
    if isinstance(template, list):  # named templates: the "default" one serves chat
        named = {t["name"]: t["template"] for t in template}
        template = named.get("default")
    return template


__all__ = ["ChatTemplateError", "Tokenizer"]
