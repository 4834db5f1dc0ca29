"""regions: a multi-region cache manager for Python and Django, built on Beaker.

>>> manager = CacheManager({"local": {"BACKEND": "memory"}})
>>> @manager.region("local")
... def square(x: int) -> int:
...     return x * x
>>> square(3)
9
"""

from . import keys, tags
from .decorator import CachedFunction
from .errors import ConfigurationError, RegionError, UncacheableArgument, UnknownRegion
from .manager import CacheManager, configure, get_manager, invalidate_tags, region
from .region import DEFAULT, Region
from .scope import ScopedThreadPoolExecutor, in_request_scope, request_scope

__all__ = [
    "DEFAULT",
    "CacheManager",
    "CachedFunction",
    "ConfigurationError",
    "Region",
    "RegionError",
    "ScopedThreadPoolExecutor",
    "UncacheableArgument",
    "UnknownRegion",
    "configure",
    "get_manager",
    "in_request_scope",
    "invalidate_tags",
    "keys",
    "region",
    "request_scope",
    "tags",
]
__version__ = "0.2.0"  # the one place; pyproject.toml reads it (setuptools dynamic)
