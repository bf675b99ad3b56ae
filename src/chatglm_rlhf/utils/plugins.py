"""Plug-ins named in code or configs as ``"module:attr"`` strings, imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from chatglm_rlhf.errors import ConfigError


def load_object(spec: str, key: str) -> Any:
    """``"module:attr"`` -> the object, or a one-line ConfigError naming the config ``key``."""
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{key}={spec}: cannot load it as module:attr ({e})") from None
