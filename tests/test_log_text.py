"""What the log is told: never a cached function's arguments.

* A rejected entry's line names the function's namespace and a short keyed digest of the key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from regions.keys import encode
from regions.signing import Signer


def regions_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "regions"]


# rejected entries -------------------------------------------------------------------------------
def test_a_rejected_entry_is_logged_by_function_and_key_digest_never_its_arguments(
    region_config: Any, make_manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager({"r": region_config("file")})
    region = manager["r"]

    @manager.region("r")
    def profile(email: str) -> str:
        return email.upper()

    email = "alice.private@example.com"
    path = Path(profile.cache_key(email))  # a file region's cache key is the entry's path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an entry")
    with caplog.at_level(logging.WARNING, logger="regions"):
        assert profile(email) == email.upper()
    assert region.stats()["rejected"] >= 1
    [line] = [m for m in regions_lines(caplog) if "rejected" in m]
    assert "alice" not in line and "example.com" not in line, line
    assert f"{profile.__module__}.{profile.__qualname__}" in line, line  # which function
    digest = region.store.signer.key_digest(encode(email))
    assert len(digest) == 12 and digest in line, line


def test_the_key_digest_is_keyed_and_stable() -> None:
    one, other = Signer("a" * 32), Signer("b" * 32)
    assert one.key_digest("s3:abc") == Signer("a" * 32).key_digest("s3:abc")  # every process alike
    assert one.key_digest("s3:abc") != other.key_digest("s3:abc")  # unguessable without the secret
    assert one.key_digest("s3:abc") != one.key_digest("s3:abd")
