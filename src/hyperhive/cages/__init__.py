"""Cage backends by name. `auto` picks bwrap when it works on this host, else refuses."""

from __future__ import annotations

import importlib
from typing import Literal

from hyperhive.cages.base import Cage
from hyperhive.errors import CageError

__all__ = ["BACKENDS", "CageChoice", "resolve_cage"]

CageChoice = Literal["auto", "bwrap", "nspawn", "process"]
BACKENDS: dict[str, str] = {
    "bwrap": "hyperhive.cages.bwrap:BwrapCage",
    "nspawn": "hyperhive.cages.nspawn:NspawnCage",
    "process": "hyperhive.cages.process:ProcessCage",
}


def load_backend(kind: str) -> type[Cage]:
    module, _, attr = BACKENDS[kind].partition(":")
    cls: type[Cage] = getattr(importlib.import_module(module), attr)
    return cls


def resolve_cage(choice: str) -> tuple[Cage, str]:
    """Return the backend for `choice` and a sentence saying why it was picked."""
    if choice == "auto":
        cls = load_backend("bwrap")
        ok, why = cls.available()
        if ok:
            return cls(), f"bwrap (auto: {why})"
        raise CageError(
            f"no sandbox available: bwrap {why}. Install bubblewrap, or pass --cage process "
            "to run agents without isolation (development only)."
        )
    if choice not in BACKENDS:
        raise CageError(f"unknown cage backend {choice!r} (choose from auto, {', '.join(BACKENDS)})")
    cls = load_backend(choice)
    ok, why = cls.available()
    if not ok:
        raise CageError(f"the {choice} cage is not available here: {why}")
    return cls(), f"{choice} ({why})"
