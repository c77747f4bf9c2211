"""The handler registry: importing this module registers every kopf handler."""

from infleet.operator import cache, login, settings, watches

__all__ = ["cache", "login", "settings", "watches"]
