"""A Bot Framework echo bot that counts turns in UserState, on botmemory, and forgets idle users.

    python examples/botframework_echo.py [--store sqlite:///echo.db]

The bot is an ordinary Bot Framework ``ActivityHandler`` whose ``UserState`` and
``ConversationState`` use ``BotMemoryStorage``. A retention policy
(``user.*: 30 days, sliding``) makes every user's state expire 30 days after
their last turn; the janitor deletes it and records why in the audit log.
Here the turns are driven by the SDK's ``TestAdapter`` and a ``FakeClock``
stands for the 31 days, so the example runs anywhere in a second; in a real
bot, pass ``BotMemoryStorage`` to the states behind your ``CloudAdapter``.
"""

from __future__ import annotations

import argparse
import asyncio

from botbuilder.core import ActivityHandler, ConversationState, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount

import botmemory
from botmemory.integrations.botbuilder import BotMemoryStorage, LinkConversations
from botmemory.retention import AuditLog, Janitor, RetentionConfig
from botmemory.testing import FakeClock

RETENTION = RetentionConfig.parse({"policies": {"user.*": {"expire": "30d", "mode": "sliding"}}})


class EchoBot(ActivityHandler):
    """Echoes each message with the user's turn count, kept in UserState."""

    def __init__(self, user_state: UserState, conversation_state: ConversationState) -> None:
        self.user_state = user_state
        self.conversation_state = conversation_state
        self.turns = user_state.create_property("turns")
        self.last = conversation_state.create_property("last_message")

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        turns = await self.turns.get(turn_context, lambda: 0) + 1
        await self.turns.set(turn_context, turns)
        await self.last.set(turn_context, turn_context.activity.text)
        await turn_context.send_activity(f"turn {turns}: you said {turn_context.activity.text!r}")

    async def on_turn(self, turn_context: TurnContext) -> None:
        await super().on_turn(turn_context)
        await self.user_state.save_changes(turn_context)
        await self.conversation_state.save_changes(turn_context)


async def say(storage: BotMemoryStorage, bot: EchoBot, user: str, text: str) -> str:
    activity = Activity(
        type=ActivityTypes.message,
        channel_id="emulator",
        from_property=ChannelAccount(id=user),
        recipient=ChannelAccount(id="echo"),
        conversation=ConversationAccount(id=f"conversation-{user}"),
        text=text,
    )
    adapter = TestAdapter(bot.on_turn, template_or_conversation=activity)
    adapter.use(LinkConversations(storage))  # so forget(user) also covers their conversations
    await adapter.process_activity(activity, bot.on_turn)
    return str(adapter.activity_buffer[-1].text)


async def main(url: str) -> None:
    clock = FakeClock()
    async with await botmemory.open(url, clock=clock) as store:
        storage = BotMemoryStorage(store, bot_id="echo")
        storage.bot.retention = RETENTION  # writes follow the policy from now on
        bot = EchoBot(UserState(storage), ConversationState(storage))

        for text in ("hello", "how are you?"):
            print("ada:", await say(storage, bot, "ada", text))
        print("bob:", await say(storage, bot, "bob", "hi"))

        clock.advance(20 * 86_400)  # 20 days later only Ada comes back
        print("ada:", await say(storage, bot, "ada", "back again"))
        clock.advance(11 * 86_400)  # 31 days after Bob's last turn

        report = await Janitor(store, {"echo": RETENTION}).run_once()
        print(f"janitor: {report.purged} expired entries deleted")
        for user in ("ada", "bob"):
            print(f"{user}'s user variables:", sorted(await storage.bot.memory.user(user).items()))
        records = await AuditLog(store).query("echo", user_id="bob")
        print("audit for bob:", sorted({(r["scope"], r["reason"]) for r in records}))
        print("bob:", await say(storage, bot, "bob", "hi again"))  # a forgotten user starts over

        receipt = await storage.bot.users.forget("ada")
        print("forget ada:", receipt["counts"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory://", help="botmemory store URL (default memory://)")
    asyncio.run(main(parser.parse_args().store))
