"""The backend contract as a reusable pytest suite: run it against your own backend.

Every built-in backend passes it (``tests/test_contract.py`` holds one subclass each). A third-party
backend is one module implementing the interfaces of :mod:`regions.backends.contract` (``Store``,
``Backend``, and where it shares storage across processes ``SharedLock``, ``TagVersions`` and
``LogStorage``). Set as ``"BACKEND": "package.module:Class"``, it runs the same tests by subclassing
:class:`BackendContract` in one of its test modules::

    import uuid

    from regions.testing import BackendContract


    class TestMyBackend(BackendContract):
        #: its ``beaker.backends`` entry point name; without one the Beaker tests are skipped
        beaker_type = "package.mybackend"

        def config(self, tmp_path, **settings):
            # one region's settings; each call must name storage of its own
            location = str(tmp_path / uuid.uuid4().hex)
            return {"BACKEND": "package.module:Class", "LOCATION": location, **settings}

A backend whose entries expire by this process's ``time.time`` alone (no server ages them) sets
``local_expiry = True``: its expiry tests then run on a fake clock, in milliseconds, instead of
waiting a second or two each.

A backend needing a server gets it from a fixture of its own, saved on ``self`` by an autouse fixture
(``config`` is called after autouse fixtures); see ``TestMemcached`` in ``tests/test_contract.py``.

This module imports pytest: import it from tests only (``import regions`` never imports it).
"""

from .base import CallCounter, ContractBase, WsgiClient
from .beaker import BeakerContract
from .clock import ExpiryClock
from .decorator import DecoratorContract
from .region import RegionContract

__all__ = ["BackendContract", "CallCounter", "ContractBase", "ExpiryClock", "WsgiClient"]


class BackendContract(RegionContract, DecoratorContract, BeakerContract):
    """What every regions backend must do; subclass it once per backend (named ``Test...``).

    Hooks (:class:`ContractBase`): :meth:`config` (required), :meth:`scope`, :meth:`beaker_options`,
    and the class attributes ``beaker_type``, ``persistent``, ``expected_failures``, ``local_expiry``.
    """

