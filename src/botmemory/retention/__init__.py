"""Data retention: policies, the janitor, the audit log, GDPR export and erasure, legal hold.

- ``RetentionConfig.parse(bot_yaml["retention"])`` and ``bot.retention = config``
  make a bot's writes follow its policies (``policy``);
- ``Janitor(store, configs).run_once()`` deletes what expired, in bounded
  batches, and re-applies changed policies (``janitor``);
- ``AuditLog(store).query(bot_id, user_id=…)`` says why data disappeared (``audit``);
- ``bot.users.export / forget / hold / release`` (``users``).

This package uses the store and the store never imports it: the package's
top (``botmemory/__init__.py``) registers ``users.install_hooks`` as a bot
hook (the write hook on every bot handle) and ``Users`` as the ``users``
extension (``bot.users``), through ``botmemory.store.register_bot_hook`` and
``register_bot_extension``.
"""

from __future__ import annotations

from .audit import REASONS, AuditLog
from .janitor import Janitor, JanitorReport
from .policy import MODES, Policy, RetentionConfig
from .users import Users

__all__ = ["MODES", "REASONS", "AuditLog", "Janitor", "JanitorReport", "Policy", "RetentionConfig", "Users"]
