"""Which streams may skip the database poll (docs/behaviour.md §2.3): where every change of a
chat reaches this process — one SQLite process; PostgreSQL with the stream relay listening —
and no other. PostgreSQL without the relay keeps the poll every ``stream_poll_s``: another
replica may run the chat and nothing would tell this one."""

from __future__ import annotations

from pathlib import Path

from tether.settings import Settings
from tether.wiring import build_graph


async def test_only_a_complete_event_source_lets_streams_skip_the_poll(
    tmp_path: Path, db_url: str
) -> None:
    for relay in (True, False):
        settings = Settings(
            data_dir=tmp_path / "data",
            db_url=db_url,
            cli_config=tmp_path / "c.json",
            run_chatd=False,
            run_provisioner=False,
            stream_relay=relay,
            stream_fallback_poll_s=45.0,
        )
        graph = await build_graph(settings)
        try:
            service = graph.chat_service
            assert service.stream_fallback_poll_s == 45.0
            complete = service.stream_complete
            if db_url.startswith("sqlite"):
                assert complete is not None and complete()  # one process per file
            elif relay:
                assert service.stream_remote is not None
                assert complete is not None and not complete()  # not listening yet
            else:
                assert complete is None  # the poll every stream_poll_s stays
        finally:
            await graph.aclose()
