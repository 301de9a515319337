"""Where per-user runtime and retention state lives: private KVS namespaces.

Retention owns this map because erasing a user must reach every piece of
state kept about them; the runtime (sessions, owners, links) and the HTTP
server import it from here.

Every namespace here starts with ``PRIVATE_NS_PREFIX`` (``"__rt/"``), which
no bot id can (bot ids start with a letter or digit), so this state is
invisible to bots' KVS calls and to ``store.bots()``, and the store-wide
``purge_expired`` leaves it to its owners (the runtime's and the retention
janitor's explicit, per-namespace purges).

Layout (all values JSON):

- ``__rt/sessions/<bot>``: key = conversation id; value = the session
  ``{"user_id", "flow", "node", "temp", "started_at", "last_activity"}``,
  with a KVS expiry of ``last_activity + session_timeout``.
- ``__rt/links/<bot>``: key = ``<enc user_id>/<enc conversation_id>``;
  value ``{"linked_at"}``: which conversations a user took part in.
- ``__rt/holds/<bot>``: key = ``<enc user_id>``; value ``{"since", "reason"}``.
- ``__rt/audit/<bot>``: the audit log (see ``botmemory.retention.audit``).
- ``__rt/owners/<bot>``: key = conversation id (as given); value
  ``{"user_id", "since"}``: the user who started the conversation, the only
  one ``Runtime.converse`` lets continue it. Kept after the conversation's
  session ends (the id stays that user's), deleted when the user is erased.
- ``__rt/current/<bot>``: key = user id (as given); value
  ``{"conversation_id", "since"}``: the user's current conversation, used by
  ``Runtime.converse(..., conversation_id=None)``; removed when that
  conversation's session ends (erasure of a user deletes it too).
"""

from __future__ import annotations

from ..backends.base import PRIVATE_NS_PREFIX
from ..keys import encode_component

__all__ = [
    "PRIVATE_NS_PREFIX",
    "audit_ns",
    "current_ns",
    "holds_ns",
    "link_key",
    "links_ns",
    "owners_ns",
    "sessions_ns",
    "user_links_prefix",
]


def sessions_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}sessions/{bot_id}"


def links_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}links/{bot_id}"


def holds_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}holds/{bot_id}"


def audit_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}audit/{bot_id}"


def owners_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}owners/{bot_id}"


def current_ns(bot_id: str) -> str:
    return f"{PRIVATE_NS_PREFIX}current/{bot_id}"


def link_key(user_id: str, conversation_id: str) -> str:
    return f"{encode_component(user_id)}/{encode_component(conversation_id)}"


def user_links_prefix(user_id: str) -> str:
    return f"{encode_component(user_id)}/"
