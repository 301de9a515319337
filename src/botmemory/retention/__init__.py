"""Data retention: policies, the janitor, the audit log, GDPR export and erasure, legal hold.

- ``RetentionConfig.parse(bot_yaml["retention"])`` and ``bot.retention = config``
  make a bot's writes follow its policies (``policy``);
- ``Janitor(store, configs).run_once()`` deletes what expired, in bounded
  batches, and re-applies changed policies (``janitor``);
- ``AuditLog(store).query(bot_id, user_id=…)`` says why data disappeared (``audit``);
- ``bot.users.export / forget / hold / release`` (``users``).

This package uses the store; the store only reaches it through ``Bot``
(``bot.users`` and the write hook installed on every bot handle).
"""

from __future__ import annotations

from .audit import REASONS, AuditLog
from .janitor import Janitor, JanitorReport
from .policy import MODES, Policy, RetentionConfig
from .users import Users

__all__ = ["MODES", "REASONS", "AuditLog", "Janitor", "JanitorReport", "Policy", "RetentionConfig", "Users"]
