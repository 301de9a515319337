"""Test support shipped with botmemory: ``FakeClock`` and the backend contract suite.

The contract suite lives in ``botmemory.testing.contract``; a backend's tests
subclass its classes and provide the ``store`` and ``clock`` fixtures (see
that module). ``botmemory.testing.statemachine`` checks a store against a
plain-dict model with Hypothesis.
"""

from .clock import FakeClock

__all__ = ["FakeClock"]
