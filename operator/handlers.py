"""The handler registry: importing this module registers every kopf handler.

One import per handler module. The autoscaler's timer module adds its import here.
"""

from infleet.operator import autoscale_timer, login, on_children, on_service, settings  # noqa: F401

__all__ = ["login", "on_children", "on_service", "settings"]
