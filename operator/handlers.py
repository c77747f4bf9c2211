"""The handler registry: importing this module registers every kopf handler."""

from infleet.operator import cache, login, lora_cache, lora_watches, settings, watches

__all__ = ["cache", "login", "lora_cache", "lora_watches", "settings", "watches"]
