"""One problem found in region settings (:func:`regions.config.check`; Django checks use its id)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings: ``id`` is ``E001`` ... ``E008`` (``level`` ``"error"``:
    the settings cannot be used), or ``W010`` ... (``"warning"``: they work, not quite as written)."""

    id: str
    region: str | None
    option: str | None
    message: str
    hint: str
    level: str = "error"

    @property
    def is_error(self) -> bool:
        return self.level == "error"

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})"
