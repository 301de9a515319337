"""botmemory as the storage of other bot frameworks.

Each integration is a module of its own, imported by name, and needs its
framework (an optional extra); importing ``botmemory`` imports neither:

- ``botmemory.integrations.botbuilder`` (``pip install 'botmemory[botbuilder]'``):
  ``BotMemoryStorage``, a Bot Framework SDK ``Storage``, and
  ``LinkConversations``, a middleware that ties conversations to their users
  for ``forget``;
- ``botmemory.integrations.langgraph`` (``pip install 'botmemory[langgraph]'``):
  ``BotMemorySaver``, a LangGraph checkpointer, and ``BotMemoryStore``, a
  LangGraph ``BaseStore`` with TTL.

Both keep a user's data in that user's botmemory scopes, so retention
policies, the audit log, ``bot.users.export`` and ``bot.users.forget`` cover
it like any other memory. They use only the public library API.
"""
