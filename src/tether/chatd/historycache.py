"""A bounded per-chat cache of the history a turn sends: the messages since the chat's last
compaction, parsed, with their model messages converted once.

A turn asks :meth:`HistoryCache.view` for a chat: the cache checks the chat's latest
compaction (one indexed query) and reads only the rows after the last ``seq`` it holds, so
a turn's database and conversion cost does not grow with the chat's length. Messages are
append-only (``seq`` grows), so rows another replica appended after a takeover are picked up
by the same read; a different compaction number (a compaction here or on another replica,
``/clear``) or :meth:`invalidate` drops the entry. An edit (chatd/edits.py) invalidates it
by a bus event on every replica and, should that event be lost, at the next read: each read
starts at the newest cached row, which an edit always supersedes. Memory is bounded by
``max_messages`` and by ``max_bytes`` (the approximate size of the messages' stored JSON,
:func:`stored_bytes`) over all chats, least recently used chats first, not by the number or
length of chats: one huge tool result counts for its size, not as one message. A chat larger
than either bound alone is served but not kept.

A warm turn reads nothing (issue #12): every message this process persists is published
on its stream hub, and :meth:`HistoryCache.adopt` appends it to the cached entry when its
``seq`` directly follows the entry's last one (seqs are per chat and gap-free, so the
message is exactly the row a read would return; anything else is left to the read). The
worker's claim returns the chat's last ``seq``; when the entry already ends there,
:meth:`HistoryCache.view` skips the read. A message persisted by another process (a send
on another replica) leaves a gap, and the read fills it. An edit appends a message after
every row, so the claim's last ``seq`` is past the entry even if its invalidation was
missed, and the read finds the superseded rows as before.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic_ai import messages as pai

from tether.chatd import messages as cm
from tether.chatd.context import Calibration
from tether.db.compactions import Compaction
from tether.domain.chat import StoredMessage


@dataclass
class Entry:
    compaction: Compaction | None
    last_seq: int
    messages: list[cm.ChatMessage] = field(default_factory=list)
    converted: dict[int, list[pai.ModelMessage]] = field(default_factory=dict)  # by seq
    calibration: Calibration = field(default_factory=Calibration)
    nbytes: int = 0  # the messages' stored_bytes

    @property
    def number(self) -> int:
        return self.compaction.number if self.compaction is not None else 0


def stored_to_chat(msg: StoredMessage) -> cm.ChatMessage:
    """A stored message row as the chat history the model is given."""
    return cm.ChatMessage(
        role=msg.role,  # type: ignore[arg-type]
        parts=cm.load_parts(msg.parts),
        visibility=msg.visibility,  # type: ignore[arg-type]
        seq=msg.seq,
        created_at=msg.created_at,
        model=msg.model,
    )


# built once: json.dumps with arguments builds an encoder per call (≈ 2× the cost)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def stored_bytes(msg: StoredMessage) -> int:
    """The approximate size of a message as stored: its parts' compact JSON, in characters
    (what the cache's byte bound counts; the parsed and converted objects take a few times
    that, in proportion)."""
    return len(_encode(msg.parts))


LoadRows = Callable[[uuid.UUID, int], Awaitable[list[StoredMessage]]]
LoadLatest = Callable[[uuid.UUID], Awaitable[Compaction | None]]


class HistoryCache:
    def __init__(
        self,
        load_rows: LoadRows,
        load_latest: LoadLatest,
        *,
        max_messages: int,
        max_bytes: int | None = None,
    ) -> None:
        self._rows = load_rows
        self._latest = load_latest
        self.max_messages = max_messages
        self.max_bytes = max_bytes  # None: bounded by messages only
        self._entries: OrderedDict[uuid.UUID, Entry] = OrderedDict()
        self._size = 0
        self._bytes = 0
        self.rows_read = 0  # rows loaded from the database (tests and the benchmark read it)
        self.adopted = 0  # messages taken from this process's publications instead

    @property
    def size(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """The cached messages' :func:`stored_bytes`, over all chats."""
        return self._bytes

    def _too_big(self, entry: Entry) -> bool:
        return len(entry.messages) > self.max_messages or (
            self.max_bytes is not None and entry.nbytes > self.max_bytes
        )

    def __contains__(self, chat_id: uuid.UUID) -> bool:
        return chat_id in self._entries

    def invalidate(self, chat_id: uuid.UUID) -> None:
        entry = self._entries.pop(chat_id, None)
        if entry is not None:
            self._size -= len(entry.messages)
            self._bytes -= entry.nbytes

    def forget(self, chat_id: uuid.UUID | None) -> None:
        """:meth:`invalidate` one chat, or every chat with None (events may be lost)."""
        if chat_id is not None:
            self.invalidate(chat_id)
        else:
            self._entries.clear()
            self._size = 0
            self._bytes = 0

    def adopt(self, msg: StoredMessage) -> None:
        """Take a message this process just persisted (and published) into the chat's
        cached entry, if it directly follows the entry's last row; otherwise the next
        :meth:`view` reads it."""
        entry = self._entries.get(msg.chat_id)
        if entry is None or msg.superseded or msg.seq != entry.last_seq + 1:
            return
        try:
            adopted = stored_to_chat(msg)
        except ValueError:  # unparseable parts: never break the publisher; the read decides
            self.invalidate(msg.chat_id)
            return
        self.adopted += 1
        nbytes = stored_bytes(msg)
        entry.messages.append(adopted)
        entry.last_seq = msg.seq
        entry.nbytes += nbytes
        self._size += 1
        self._bytes += nbytes
        if self._too_big(entry):
            self.invalidate(msg.chat_id)  # as a read would: served, not kept
        else:
            self._evict()

    async def view(
        self,
        chat_id: uuid.UUID,
        *,
        known_number: int | None = None,
        known_last_seq: int | None = None,
    ) -> Entry:
        """The chat's messages since its latest compaction, read incrementally.
        ``known_number``, ``known_last_seq``: the latest compaction's number and the last
        message's ``seq``, already read by the caller (the worker's claim); when the cached
        entry has the number, the compaction is not queried, and when it also ends at that
        ``seq``, nothing is read."""
        entry = self._entries.get(chat_id)
        if known_number is not None and entry is not None and entry.number == known_number:
            if known_last_seq is not None and entry.last_seq == known_last_seq:
                self._entries.move_to_end(chat_id)
                return entry
            latest, number = entry.compaction, known_number
        else:
            latest = await self._latest(chat_id)
            number = latest.number if latest is not None else 0
        if entry is None or entry.number != number:
            calibration = entry.calibration if entry is not None else Calibration()
            self.invalidate(chat_id)
            through = latest.through_seq if latest is not None else 0
            entry = Entry(latest, through, calibration=calibration)
        else:
            self._entries.pop(chat_id)
            self._size -= len(entry.messages)
            self._bytes -= entry.nbytes
        # The read starts at the newest cached row (superseded rows included): an edit
        # supersedes the edited message and every later one, so a superseded newest row
        # means the entry is stale, even if this replica missed the edit's bus event.
        rows = await self._rows(chat_id, max(0, entry.last_seq - 1))
        if entry.messages and any(r.seq == entry.last_seq and r.superseded for r in rows):
            self.invalidate(chat_id)
            latest = await self._latest(chat_id)  # the edit may have invalidated it
            through = latest.through_seq if latest is not None else 0
            entry = Entry(latest, through, calibration=entry.calibration)
            rows = await self._rows(chat_id, entry.last_seq)
        for row in rows:
            if row.seq <= entry.last_seq or row.superseded:
                continue  # the boundary row, or edited away
            self.rows_read += 1
            entry.messages.append(stored_to_chat(row))
            entry.last_seq = row.seq
            entry.nbytes += stored_bytes(row)
        self._keep(chat_id, entry)
        return entry

    def converted(self, entry: Entry, msg: cm.ChatMessage) -> list[pai.ModelMessage]:
        """``to_model_messages([msg])``, once per stored message."""
        if msg.seq is None:
            return cm.to_model_messages([msg])
        found = entry.converted.get(msg.seq)
        if found is None:
            found = entry.converted[msg.seq] = cm.to_model_messages([msg])
        return found

    def _keep(self, chat_id: uuid.UUID, entry: Entry) -> None:
        if self._too_big(entry):
            return  # served, not kept: one chat never evicts everything else for nothing
        self._entries[chat_id] = entry
        self._size += len(entry.messages)
        self._bytes += entry.nbytes
        self._evict()

    def _evict(self) -> None:
        while self._entries and (
            self._size > self.max_messages
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            _, old = self._entries.popitem(last=False)
            self._size -= len(old.messages)
            self._bytes -= old.nbytes
