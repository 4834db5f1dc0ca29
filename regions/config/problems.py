"""One problem found in region settings (:func:`regions.config.check`; Django checks use its id)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings: ``id`` is ``E001`` ... ``E007``."""

    id: str
    region: str | None
    option: str | None
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})"
