"""The history cache adopts the messages this process publishes (chatd/historycache.py,
issue #12): a turn whose claim says the chat ends where the cache does reads nothing; a
gap, an edit, a compaction or the memory bound fall back to the read as before."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from tether.chatd.historycache import HistoryCache
from tether.domain.chat import StoredMessage


class Rows:
    """The chat_messages rows of a few chats, and the reads the cache made of them."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, list[StoredMessage]] = {}
        self.reads = 0

    def add(self, chat: uuid.UUID, text: str = "m") -> StoredMessage:
        rows = self.rows.setdefault(chat, [])
        msg = StoredMessage(
            id=uuid.uuid4(),
            chat_id=chat,
            seq=len(rows) + 1,
            role="user",
            parts=[{"type": "text", "text": f"{text}{len(rows) + 1}"}],
            visibility="both",
            model=None,
            created_at=datetime.now(UTC),
        )
        rows.append(msg)
        return msg

    def supersede_from(self, chat: uuid.UUID, seq: int) -> None:
        self.rows[chat] = [replace(r, superseded=r.seq >= seq) for r in self.rows[chat]]

    async def load(self, chat: uuid.UUID, after: int) -> list[StoredMessage]:
        self.reads += 1
        return [r for r in self.rows.get(chat, []) if r.seq > after]

    def last(self, chat: uuid.UUID) -> int:
        return self.rows[chat][-1].seq


async def _latest(_chat: uuid.UUID) -> None:
    return None


def _texts(entry: object) -> list[str]:
    return [m.parts[0].text for m in entry.messages]  # type: ignore[attr-defined]


async def test_a_published_message_that_follows_the_cache_is_adopted_and_not_read() -> None:
    db, chat = Rows(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=100)
    for _ in range(3):
        db.add(chat)
    await cache.view(chat)
    reads = db.reads
    for _ in range(2):  # the send's message, then the turn's own
        cache.adopt(db.add(chat))
    entry = await cache.view(chat, known_number=0, known_last_seq=db.last(chat))
    assert db.reads == reads and cache.adopted == 2 and cache.rows_read == 3
    assert _texts(entry) == ["m1", "m2", "m3", "m4", "m5"] and cache.size == 5


async def test_a_gap_is_not_adopted_and_the_read_fills_it() -> None:
    """A message persisted elsewhere (another replica) was not published here."""
    db, chat = Rows(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=100)
    db.add(chat)
    await cache.view(chat)
    db.add(chat, "elsewhere")  # seq 2: not published here
    cache.adopt(db.add(chat))  # seq 3 does not follow seq 1
    cache.adopt(db.rows[chat][0])  # an old one, again
    assert cache.adopted == 0
    reads = db.reads
    entry = await cache.view(chat, known_number=0, known_last_seq=db.last(chat))
    assert db.reads == reads + 1
    assert _texts(entry) == ["m1", "elsewhere2", "m3"]
    cache.adopt(db.add(chat))  # the gap is filled: adoption resumes
    assert cache.adopted == 1


async def test_a_missed_edit_is_found_by_the_read() -> None:
    """An edit on another replica whose bus event was lost: its new message is not
    adopted (not published here) and lies past the cache, so the claim's last seq makes
    the turn read, and the read sees the superseded rows."""
    db, chat = Rows(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=100)
    for _ in range(3):
        db.add(chat)
    await cache.view(chat)
    db.supersede_from(chat, 2)
    db.add(chat, "edited")
    entry = await cache.view(chat, known_number=0, known_last_seq=db.last(chat))
    assert _texts(entry) == ["m1", "edited4"]


async def test_adoption_needs_a_cached_entry_and_the_same_compaction() -> None:
    db, chat, other = Rows(), uuid.uuid4(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=100)
    cache.adopt(db.add(other))  # never viewed: nothing cached to extend
    assert other not in cache and cache.adopted == 0
    db.add(chat)
    await cache.view(chat)
    cache.adopt(db.add(chat))
    reads = db.reads
    # a compaction number the entry does not have: the entry is rebuilt by reading
    await cache.view(chat, known_number=1, known_last_seq=db.last(chat))
    assert db.reads > reads


async def test_adoption_keeps_the_memory_bound() -> None:
    db, a, b = Rows(), uuid.uuid4(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=4)
    for chat in (a, b):
        for _ in range(2):
            db.add(chat)
        await cache.view(chat)
    cache.adopt(db.add(b))  # 5 > 4: the least recently used chat goes
    assert a not in cache and b in cache and cache.size == 3
    for _ in range(2):
        cache.adopt(db.add(b))  # b alone past the bound: dropped, read next time
    assert b not in cache and cache.size == 0


async def test_a_message_that_does_not_parse_is_left_to_the_read() -> None:
    """Adoption runs inside the publisher (the send, the recorder): it never raises."""
    db, chat = Rows(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=100)
    db.add(chat)
    await cache.view(chat)
    bad = replace(db.add(chat), parts=[{"type": "no-such-part"}])
    cache.adopt(bad)
    assert chat not in cache and cache.adopted == 0


async def test_the_cache_evicts_by_bytes_as_well_as_by_messages() -> None:
    """history_cache_max_bytes: one huge tool result counts for its size, not as one
    message; read or adopted, the least recently used chats go first, and a chat bigger
    than the bound alone is served but not kept."""
    db, a, b, c = Rows(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache = HistoryCache(db.load, _latest, max_messages=1000, max_bytes=10_000)
    for chat in (a, b):
        db.add(chat, "x" * 3_000)
        await cache.view(chat)
    assert a in cache and b in cache and 6_000 < cache.nbytes < 6_200
    cache.adopt(db.add(b, "y" * 4_000))  # 10,000+ bytes in 3 messages: a goes
    assert a not in cache and b in cache and cache.size == 2
    assert 7_000 < cache.nbytes <= 10_000
    db.add(c, "z" * 20_000)
    entry = await cache.view(c)  # alone past the bound: served, not kept
    assert _texts(entry) == ["z" * 20_000 + "1"]
    assert c not in cache and b in cache and cache.nbytes <= 10_000
    cache.adopt(db.add(b, "w" * 5_000))  # b alone past the bound now: dropped
    assert b not in cache and cache.size == 0 and cache.nbytes == 0
    await cache.view(a)  # what is evicted is read again next time
    assert a in cache and cache.nbytes > 3_000
