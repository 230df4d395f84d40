"""What the model chip says, kept true across harness restarts and config deploys (issue 14 §3).

`/state/hyperhive-model-state.json` remembers the model the last turn ran with (`active`), when
the model choice last changed (`switched_at`) and by whom (`source`: `operator` for `/model`,
`config` for a deploy that changed `model` in agent.toml), and the config's model seen at the
last start (`config_model`), so a restart on a new config can tell that a deploy switched it.
The operator's override itself stays in `/state/hyperhive-model` (architecture §5). A failed write is
a warning for the caller to show, never a crash.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelRecord", "load_record", "save_record"]


@dataclass
class ModelRecord:
    config_model: str | None = None
    active: str | None = None
    switched_at: float | None = None
    source: str | None = None

    def switched(self, source: str, at: float | None = None) -> None:
        self.switched_at = time.time() if at is None else at
        self.source = source


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def load_record(path: Path) -> ModelRecord | None:
    """The saved record, or None when there is none (first start) or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    at = data.get("switched_at")
    return ModelRecord(
        config_model=_text(data.get("config_model")),
        active=_text(data.get("active")),
        switched_at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
        source=_text(data.get("source")),
    )


def save_record(path: Path, record: ModelRecord) -> str | None:
    """Write the record (whole, by rename); returns a warning instead of raising."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        return f"could not save the model state to {path}: {exc.strerror or exc}"
    return None
