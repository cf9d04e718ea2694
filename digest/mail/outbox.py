"""The outbox: digests written as .eml files when no SMTP server is configured; the folder
and the files are readable by their owner only (they hold each subscriber's links)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from digest.common.errors import SendError
from digest.mail.compose import Outgoing


class Outbox:
    """Writes each message atomically as ``KEY.eml``; writing the same key again replaces
    the file, so a resumed run cannot leave two copies of one delivery."""

    name = "outbox"
    size = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def __aenter__(self) -> Outbox:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = self.folder.stat()
            if found.st_mode & 0o077 and found.st_uid == os.getuid():
                self.folder.chmod(0o700)  # made world-readable by an earlier version
        except OSError as exc:
            raise SendError(f"{self.folder}: cannot create the outbox: {exc.strerror or exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, msg: Outgoing, key: str) -> str:
        target = self.folder / f"{key}.eml"
        try:
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
            with os.fdopen(handle, "wb") as out:
                out.write(msg.data)
            Path(temporary).replace(target)
        except OSError as exc:
            raise SendError(f"{target}: cannot write: {exc.strerror or exc}") from exc
        return f"stored {target.name}"
