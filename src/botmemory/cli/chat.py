"""``botmemory chat BOT``: talk to a bot in the terminal, or script it through a pipe.

Interactive (stdin is a terminal): a prompt; replies printed with rich;
the user's unfinished conversation goes on (and the chat says so), ``/new``
starts another; Ctrl-D, ``/quit`` or Ctrl-C leave. Piped (stdin is not a
terminal): a new conversation every run, so a script always meets the bot
at its start (``--continue`` goes on with the user's current one, and says
so on stderr); one message per line, empty lines skipped; every reply
printed on its own line (newlines in it escaped) or, with ``--json``, as a
JSON line ``{"type", "text", "conversation_id", ...}``; the first error
stops the run with its exit code. Only BOT is loaded from the bots folder.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import typer

from ..errors import BotMemoryError, InvalidInputError, KeyNotFoundError
from ..keys import validate_bot_id, validate_key
from .context import open_runtime, open_store, settings
from .output import Output, report_error, show, to_json

__all__ = ["chat"]

_QUIT = ("/quit", "/exit")
_NEW = "/new"


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _lines(stream: Any) -> Iterator[tuple[int, str]]:
    """Numbered lines of a binary stream, decoded strictly, without their line ending."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"stdin line {number} is not valid UTF-8") from None
        yield number, line.rstrip("\r\n")


def _reply_text(reply: dict[str, Any], *, one_line: bool) -> str:
    text = reply.get("text")
    if not isinstance(text, str):
        return to_json(reply)
    if one_line:
        return show(text)
    # Interactive: keep the bot's line breaks, escape every other invisible character.
    return "\n".join(show(part) for part in text.split("\n"))


def chat(
    ctx: typer.Context,
    bot: str = typer.Argument(..., metavar="BOT"),
    user: str = typer.Option("cli-user", "--user", metavar="ID", help="The user id you talk as."),
    conversation: str | None = typer.Option(
        None,
        "--conversation",
        metavar="ID",
        help="Conversation id (default: interactive, the user's current one; piped, a new one).",
    ),
    go_on: bool = typer.Option(
        False, "--continue", help="Piped: go on with the user's current conversation instead of a new one."
    ),
) -> None:
    """Chat with BOT (from --bots DIR) through the runtime, with memory in --store."""
    opts = settings(ctx)
    out = Output(opts.json)
    validate_bot_id(bot)
    validate_key(user, None, "user id")
    if conversation is not None:
        validate_key(conversation, None, "conversation id")
        if go_on:
            raise InvalidInputError("give --conversation or --continue, not both")
    interactive = _stdin_is_terminal()

    with asyncio.Runner() as loop:
        store = loop.run(open_store(opts.store_url, opts.timeout))
        runtime: Any = None
        try:
            runtime = loop.run(open_runtime(store, opts.bots_dir, only={bot}))
            load_error = runtime.load_errors.get(bot)
            if load_error is not None:
                raise InvalidInputError(f"bot {bot} did not load: {load_error}")
            if bot not in runtime.bots:
                raise KeyNotFoundError(f"no bot {show(bot)} in {show(opts.bots_dir)}")

            current = None if conversation is not None else loop.run(runtime.current_conversation(bot, user))
            if not interactive and conversation is None:
                if go_on and current is not None:
                    sys.stderr.write(f"note: continuing conversation {show(current)}\n")
                conversation = current if go_on else uuid.uuid4().hex
            chosen = [conversation]

            def say(text: str) -> list[dict[str, Any]]:
                replies: list[dict[str, Any]] = loop.run(
                    runtime.converse(bot, user_id=user, text=text, conversation_id=chosen[0])
                )
                return replies

            def new_conversation() -> None:
                chosen[0] = uuid.uuid4().hex

            if interactive:
                if current is not None:
                    out.text(f"(continuing conversation {show(current)}; {_NEW} starts a new one)", style="dim")
                _interactive(out, bot, say, new_conversation, current)
            else:
                for _, text in _lines(typer.get_binary_stream("stdin")):
                    if not text.strip():
                        continue
                    for reply in say(text):
                        if out.json:
                            out.json_line(reply)
                        else:
                            out.text(_reply_text(reply, one_line=True))
        finally:
            try:
                if runtime is not None:
                    loop.run(runtime.close())
            finally:
                loop.run(store.close())


def _interactive(out: Output, bot: str, say: Any, new_conversation: Any, current: str | None) -> None:
    out.text(f"chatting with {bot}; {_NEW} for a new conversation, /quit or Ctrl-D to leave", style="dim")
    shown_conversation: str | None = current
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out.text("")
            return
        if text.strip() in _QUIT:
            return
        if text.strip() == _NEW:
            new_conversation()
            continue
        if not text.strip():
            continue
        try:
            replies = say(text)
        except KeyboardInterrupt:
            out.text("")
            return
        except BotMemoryError as exc:
            # the conversation goes on: show the error and prompt again
            report_error(exc)
            continue
        for reply in replies:
            conversation = reply.get("conversation_id")
            if isinstance(conversation, str) and conversation != shown_conversation:
                shown_conversation = conversation
                out.text(f"(conversation {show(conversation)})", style="dim")
            if out.json:
                out.json_line(reply)
            else:
                out.text(f"{bot}> {_reply_text(reply, one_line=False)}", style="bold cyan")
