"""Exceptions raised by regions. All derive from :class:`RegionError`."""

from __future__ import annotations

import errno
import pickle
from typing import Any


def describe(exc: BaseException) -> str:
    """``"<type>: <message>"`` of a backend error, for a log line or a health report. A memcached
    socket times out in the kernel (``SO_RCVTIMEO``, for speed), which Python raises as
    ``BlockingIOError: [Errno 11] Resource temporarily unavailable``: said here as the timeout it is."""
    if isinstance(exc, BlockingIOError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "TimeoutError: no reply within the socket's timeout (the kernel's EAGAIN)"
    return f"{type(exc).__name__}: {exc}"


class RegionError(Exception):
    """Base class of every error regions raises on purpose."""


class UnknownRegion(RegionError, KeyError):
    """A region name that is not configured."""

    def __init__(self, name: str, configured: list[str]) -> None:
        self.name = name
        self.configured = configured
        listed = ", ".join(repr(n) for n in configured) or "none"
        super().__init__(f"unknown cache region {name!r}; configured regions: {listed}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ConfigurationError(RegionError, ValueError):
    """Bad region settings: names the region and the option."""

    def __init__(self, message: str, *, region: str | None = None, option: str | None = None) -> None:
        self.region = region
        self.option = option
        super().__init__(message)


class UncacheableArgument(RegionError, TypeError):
    """An argument that cannot be turned into a cache key safely."""


class BackendUnavailable(RegionError, ConnectionError):
    """The backend (or the server holding the key) is marked down: the call did not touch the network.

    Raised by backends while their circuit breaker is open; :class:`~regions.region.Region` counts it
    in ``stats()["unavailable"]`` and uses the function's own result.
    """


class PoolExhausted(RegionError, ConnectionError):
    """Every connection of a region's pool stayed busy for longer than its ``timeout``."""


class UnstorableValue(RegionError, pickle.PicklingError):
    """A value that cannot be pickled for a region that stores entries outside the process.

    A programming error, not a cache failure: decorated calls log it and return the function's
    result; Django's cache API (``django_regions.cache.RegionCache``) raises it, as Django's own
    backends raise :class:`pickle.PickleError`.
    """

    def __init__(self, region: str, value: Any, exc: BaseException) -> None:
        super().__init__(
            f"region {region!r} cannot store a value of type {type(value).__name__}: "
            f"{type(exc).__name__}: {exc}; cache a picklable value (or use a memory region)"
        )


class LockTimeout(RegionError, TimeoutError):
    """A key's in-process lock for a read-modify-write stayed held by another thread of this process
    for longer than the region's ``lock_timeout`` (see :meth:`regions.region.Region.locked`)."""
