"""Codec engines: one PyAV codec per session (see base.py), chosen through registry.py."""

from __future__ import annotations

from vtremote.engines.base import MAX_FRAME_DELAY, Engine, StreamConfig
from vtremote.engines.registry import AUTO_ORDER, CHOICES, ENGINES, engine_class, probe_all, resolve

__all__ = [
    "AUTO_ORDER",
    "CHOICES",
    "ENGINES",
    "MAX_FRAME_DELAY",
    "Engine",
    "StreamConfig",
    "engine_class",
    "probe_all",
    "resolve",
]
