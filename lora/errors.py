"""The one error an adapter that cannot be served raises: it names the offending field."""

from __future__ import annotations


class AdapterError(ValueError):
    """An adapter is refused. `field` names what is wrong (an adapter_config.json key, a
    tensor name, `lora_path`, `lora_name`) so an API can answer 400 and a CRD condition
    can say which field to fix; the message is complete on its own."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
