"""Test support shipped with botmemory: ``FakeClock`` and the backend contract suite.

The contract suite lives in ``botmemory.testing.contract``; a backend's tests
import it and provide a ``store_factory`` fixture (see that module).
"""

from .clock import FakeClock

__all__ = ["FakeClock"]
