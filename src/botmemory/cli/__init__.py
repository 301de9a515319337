"""The ``botmemory`` command line (typer + rich), thin over the library.

::

    botmemory [--store URL] [--bots DIR] [--json] COMMAND ...

    kvs get|set|del|ls|ttl      the KVS of a bot (or @global: the server-wide KVS)
    memory get|set|del|ls       dialog memory: user, conversation and global scopes
    init [DIR]                  write the starter bot into a bots folder
    chat BOT                    talk to a bot in the terminal (or through a pipe)
    janitor --once|--loop       delete expired data, end timed-out sessions
    user export|forget|hold|release
    audit BOT                   why data disappeared
    dump / load                 JSONL copy of a whole store, between any backends
    import-botpress EXPORT.tgz  unpack a Botpress bot export into --bots, safely
    check [DIR]                 which bots of a folder load, and why the others do not
    serve                       the HTTP API and the web admin (/ui)
    token create|list|revoke    API tokens of serve

Errors: one line on stderr; exit 2 for bad input (usage, invalid keys or
values, missing keys, legal hold, version conflicts), 1 for other failures
(the store cannot be opened or fails); never a traceback.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import typer
import typer.core
from typer.core import TyperGroup

from ..errors import InvalidInputError
from ..store import DEFAULT_URL
from . import audit, botpress, chat, init, janitor, kvs, memory, serve, tokens, users
from .arguments import check_argv, hoist_json_flag
from .context import Settings
from .dump import dump_command, load_command
from .output import debug_enabled, report_error

__all__ = ["app", "main"]


def _plain_help() -> None:
    """Help in the conventional form: ``BOT KEY`` in usage lines, no ``<bool>``/``<str>`` type column.

    typer 0.2x writes required arguments as ``{BOT}`` in usage lines and a
    type such as ``<bool>`` next to every flag and argument: placeholders a
    reader has to decode. Flags take no value, and arguments are described
    by their metavar and help, so both get no type; options that take a
    value keep their metavar (``--expiry E``).
    """
    core = typer.core
    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.metavar) if self.metavar is not None else str(self.name).upper()
            name = name if self.required or name.startswith("[") else f"[{name}]"
            return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

        argument._usage_display_name = usage_name
    if argument is not None and hasattr(argument, "display_type_rich"):
        argument.display_type_rich = lambda self, ctx: None
    if option is not None and hasattr(option, "display_type_rich"):
        original = option.display_type_rich

        def option_type(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return None
            shown: str | None = original(self, ctx)
            return shown

        option.display_type_rich = option_type


_plain_help()


class _RootGroup(TyperGroup):
    """The root command: every invocation's errors end here, as one line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            check_argv(argv)
            result = super().main(
                hoist_json_flag(argv),
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except SystemExit:
            raise
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            code = 130
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            code = 1
        except Exception as exc:
            if debug_enabled() and not isinstance(exc, typer.TyperException):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":
                # a group run without a command: typer has printed its help (or put it in the message)
                help_text = exc.format_message() if isinstance(exc, typer.TyperException) else ""
                if help_text:
                    sys.stdout.write(help_text + "\n")
                code = report_error(InvalidInputError("a command is needed (see the help above)"))
            else:
                code = report_error(exc)
        else:
            # without standalone mode, typer returns the exit code of an Exit
            code = result if isinstance(result, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=_RootGroup,
    name="botmemory",
    help="Bot memory and data retention: KVS, dialog memory, retention, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from ..version import __version__

        sys.stdout.write(f"botmemory {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    store: str = typer.Option(
        DEFAULT_URL,
        "--store",
        envvar="BOTMEMORY_STORE",
        metavar="URL",
        help="memory://, sqlite:///rel.db, sqlite:////abs.db, postgresql://…, redis://…",
    ),
    bots: str = typer.Option(
        "./bots", "--bots", envvar="BOTMEMORY_BOTS", metavar="DIR", help="Folder of bots (chat, janitor)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        envvar="BOTMEMORY_TIMEOUT",
        metavar="SECONDS",
        help="How long to wait for a locked SQLite file or an unresponsive server (default: the backend's).",
    ),
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Bot memory and data retention: KVS, dialog memory, retention, chat."""
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= 3600):
        raise InvalidInputError("--timeout must be between 0 and 3600 seconds")
    ctx.obj = Settings(store_url=store, bots_dir=bots, json=as_json, timeout=timeout)


app.add_typer(kvs.app, name="kvs")
app.add_typer(memory.app, name="memory")
app.add_typer(users.app, name="user")
app.add_typer(tokens.app, name="token")
app.command("init")(init.init)
app.command("chat")(chat.chat)
app.command("janitor")(janitor.janitor)
app.command("audit")(audit.audit)
app.command("dump")(dump_command)
app.command("load")(load_command)
app.command("serve")(serve.serve)
app.command("import-botpress")(botpress.import_botpress)
app.command("check")(botpress.check)


def main() -> None:
    """The ``botmemory`` console script."""
    app()
