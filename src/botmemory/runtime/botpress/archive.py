"""Unpacking a Botpress export (``bot_<id>_<timestamp>.tgz``) safely into a bots folder.

Refused outright: a file that is not a gzip'd tar, an archive whose files
add up to more than ``MAX_UNPACKED_BYTES`` (100 MB) or ``MAX_MEMBERS``
entries, an archive without ``bot.config.json``, and a destination that
exists. Skipped (never written) and reported: absolute paths, paths with
``..``, symbolic and hard links, devices, FIFOs and anything else that is
not a plain file or folder. Files are written with their contents only
(no owners, modes or times from the archive) into a temporary folder that
is renamed into place at the end, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

from ...errors import InvalidInputError
from ...keys import validate_bot_id

__all__ = ["MAX_MEMBERS", "MAX_UNPACKED_BYTES", "ImportReport", "import_export"]

MAX_UNPACKED_BYTES: Final = 100 * 1024 * 1024
MAX_MEMBERS: Final = 20_000
_EXPORT_NAME_RE: Final = re.compile(r"bot_(?P<id>.+)_\d+\.tgz")


@dataclass(slots=True)
class ImportReport:
    """What ``import_export`` did."""

    bot_id: str
    folder: Path
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _safe_name(name: str) -> str | None:
    """The member's relative POSIX path, or None when it is absolute or climbs out."""
    if not name or "\\" in name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def import_export(archive: Path | str, bots_dir: Path | str, *, folder_name: str | None = None) -> ImportReport:
    """Unpack a Botpress export into ``bots_dir/<bot id>``.

    Args:
        archive: the ``.tgz`` file.
        bots_dir: the bots folder (created if missing).
        folder_name: the folder to create (default: the bot id of ``bot.config.json``,
            else the ``<id>`` of ``bot_<id>_<timestamp>.tgz``).

    Returns:
        The report: bot id, folder, files written, what was skipped and why.

    Raises:
        InvalidInputError: the archive is unreadable, too large, not a bot, or the folder exists.
    """
    archive = Path(archive)
    bots_dir = Path(bots_dir)
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise InvalidInputError(f"{archive}: not a readable .tgz archive ({exc})") from None
    with tar:
        members: list[tuple[str, tarfile.TarInfo]] = []
        skipped: list[str] = []
        total = 0
        try:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise InvalidInputError(f"{archive}: more than {MAX_MEMBERS} entries")
                name = _safe_name(member.name)
                if name is None:
                    skipped.append(f"{member.name}: absolute path or '..'")
                    continue
                if member.isdir():
                    continue
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "device or special file"
                    skipped.append(f"{member.name}: {kind}")
                    continue
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise InvalidInputError(f"{archive}: more than {MAX_UNPACKED_BYTES // (1024 * 1024)} MB unpacked")
                members.append((name, member))
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise InvalidInputError(f"{archive}: damaged archive ({exc})") from None
        names = {name for name, _ in members}
        prefix = ""
        if "bot.config.json" not in names:
            tops = {name.split("/", 1)[0] for name in names}
            if len(tops) == 1 and f"{next(iter(tops))}/bot.config.json" in names:
                prefix = next(iter(tops)) + "/"  # the export was packed with its folder
            else:
                raise InvalidInputError(f"{archive}: no bot.config.json: not a Botpress bot export")
        config_member = dict(members)[prefix + "bot.config.json"]
        bot_id = folder_name or _bot_id(tar, config_member, archive)
        try:
            validate_bot_id(bot_id)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{archive}: {exc}") from None
        bots_dir.mkdir(parents=True, exist_ok=True)
        target = bots_dir / bot_id
        if target.exists():
            raise InvalidInputError(f"{target} already exists: remove it or choose another folder name")
        staging = Path(tempfile.mkdtemp(prefix=f".import-{bot_id}-", dir=bots_dir))
        report = ImportReport(bot_id=bot_id, folder=target, skipped=skipped)
        try:
            for name, member in members:
                if not name.startswith(prefix):
                    skipped.append(f"{name}: outside the bot's folder")
                    continue
                relative = name[len(prefix) :]
                destination = staging.joinpath(*relative.split("/"))
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    continue
                with source, open(destination, "xb") as out:
                    written = _copy(source, out, member.size)
                report.files += 1
                report.bytes += written
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return report


def _copy(source: object, out: object, limit: int) -> int:
    written = 0
    while True:
        chunk = source.read(min(1 << 20, limit - written + 1))  # type: ignore[attr-defined]
        if not chunk:
            return written
        written += len(chunk)
        if written > limit:
            raise InvalidInputError("an archive member is longer than its header says")
        out.write(chunk)  # type: ignore[attr-defined]


def _bot_id(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> str:
    source = tar.extractfile(member)
    config: object = None
    if source is not None and member.size <= 1024 * 1024:
        try:
            config = json.loads(source.read().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            config = None
    if isinstance(config, dict) and isinstance(config.get("id"), str) and config["id"]:
        return str(config["id"])
    match = _EXPORT_NAME_RE.fullmatch(archive.name)
    if match is not None:
        return match.group("id")
    return archive.name.split(".", 1)[0]
