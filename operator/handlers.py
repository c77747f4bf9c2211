"""The handler registry: importing this module registers every kopf handler.

One import per handler module. The autoscaler's timer module adds its import here.
"""

from infleet.operator import (  # noqa: F401
    autoscale_timer,
    indexes,
    login,
    on_children,
    on_service,
    settings,
)

__all__ = ["indexes", "login", "on_children", "on_service", "settings"]
