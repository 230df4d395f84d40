"""The model an agent's turns use, mixed into `Harness` (harness/loop.py): the config's default,
the operator's override (persisted to the model file, read at every turn) and the record of
switches (harness/modelchoice.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from hyperhive.harness.modelchoice import ModelRecord, save_record

if TYPE_CHECKING:
    from hyperhive.harness.bus import Bus
    from hyperhive.harness.loop import HarnessPaths

__all__ = ["ModelMixin"]


class ModelMixin(ABC):
    config: dict[str, Any]
    paths: HarnessPaths
    bus: Bus
    state: str
    model_record: ModelRecord | None
    model_record_path: Any
    model_queued_at: float | None

    @abstractmethod
    def _background(self, coro: Any, name: str) -> None: ...

    @abstractmethod
    async def _report(self) -> None: ...

    def default_model(self) -> str | None:
        value = self.config.get("model")
        return str(value) if value else None

    def model_override(self) -> str | None:
        try:
            text = self.paths.model_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    def model(self) -> str | None:
        """Read at every turn: the operator's override wins over the config's default."""
        return self.model_override() or self.default_model()

    def set_model(self, name: str | None) -> str | None:
        """Persist the operator's choice (None clears it). A failed write is a warning event,
        and the choice still holds for this run... except it cannot be read back, so say so."""
        warning = None
        try:
            if name:
                self.paths.model_file.write_text(name + "\n", encoding="utf-8")
            else:
                self.paths.model_file.unlink(missing_ok=True)
        except OSError as exc:
            warning = f"could not persist the model choice to {self.paths.model_file}: {exc}"
            self.bus.emit("note", {"text": "warning: " + warning, "level": "warning"})
        record = self.model_record or ModelRecord(config_model=self.default_model())
        record.switched("operator")
        self.model_record = record
        self.model_queued_at = record.switched_at
        warning = self._save_model_record() or warning
        self.bus.emit(
            "model_changed",
            {"model": name or self.default_model(), "override": name, "default": self.default_model(),
             "source": "operator", "queued": self.state == "thinking", "at": self.model_queued_at,
             "hidden_by_override": self.config_model_hidden(), "warning": warning},
        )  # fmt: skip
        self._background(self._report(), "report-model")
        return warning

    def config_model_hidden(self) -> bool:
        """True when the operator's override hides a different model in the config."""
        override = self.model_override()
        return bool(override and override != self.default_model())

    def _save_model_record(self) -> str | None:
        assert self.model_record is not None
        warning = save_record(self.model_record_path, self.model_record)
        if warning:
            self.bus.emit("note", {"text": "warning: " + warning, "level": "warning"})
        return warning

    def note_config_model(self) -> None:
        """At start: a deploy that changed the config's model is a switch ("last switched" moves,
        source `config`); the first start only records the config's model."""
        default = self.default_model()
        record = self.model_record
        if record is None:
            self.model_record = ModelRecord(config_model=default)
            self._save_model_record()
            return
        if record.config_model == default:
            return
        previous, record.config_model = record.config_model, default
        record.switched("config")
        self.model_queued_at = record.switched_at
        self._save_model_record()
        self.bus.emit(
            "model_changed",
            {"model": self.model(), "override": self.model_override(), "default": default, "source": "config",
             "previous_default": previous, "queued": False, "at": record.switched_at,
             "hidden_by_override": self.config_model_hidden()},
        )  # fmt: skip
