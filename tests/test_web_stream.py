"""The live page's stream as async code (pytest-asyncio): messages come in
order, a publisher never waits for a tab, a tab that stops reading is dropped
without holding anything up, one that falls behind is told how much it missed,
and one that reconnects goes on where it stopped."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from tracing.modes.web import BATCH, Hub, follow




async def hub(ring: int = 1000) -> Hub:
    h = Hub(ring)
    h.bind(asyncio.get_running_loop())
    return h


class Tab:
    """A reader: keeps every message it was sent, optionally slowly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.frames: list[list[dict]] = []
        self.delay = delay

    async def send(self, text: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.frames.append(json.loads(text))

    @property
    def messages(self) -> list[dict]:
        return [m for f in self.frames for m in f if m["type"] not in ("ping",)]


async def until(cond, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_messages_from_another_thread_arrive_in_order_in_bounded_frames():
    h = await hub(ring=10_000)
    tab = Tab()
    reader = asyncio.create_task(follow(h, tab.send))
    t = threading.Thread(target=lambda: [h.publish("rec", n=i) for i in range(3000)])
    t.start()
    await until(lambda: len(tab.messages) == 3000)
    t.join()
    reader.cancel()
    assert [m["seq"] for m in tab.messages] == list(range(1, 3001))
    assert [m["n"] for m in tab.messages] == list(range(3000))
    assert max(len(f) for f in tab.frames) <= BATCH


@pytest.mark.asyncio
async def test_a_tab_that_stops_reading_costs_the_publisher_nothing_and_is_dropped():
    h = await hub(ring=1000)
    stuck = asyncio.Event()

    async def never(text: str) -> None:  # a tab whose socket buffer is full: send never completes
        await stuck.wait()

    reader = asyncio.create_task(follow(h, never, send_timeout=0.3))
    t0 = time.monotonic()
    for i in range(100_000):
        h.publish("rec", n=i)
    took = time.monotonic() - t0
    assert len(h.ring) == 1000, "the ring stays bounded"
    assert took < 5, f"publishing waited for the tab ({took:.1f} s)"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader, 5)


@pytest.mark.asyncio
async def test_a_slow_tab_is_told_what_it_missed_then_goes_on_in_order():
    h = await hub(ring=50)
    tab = Tab(delay=0.05)
    reader = asyncio.create_task(follow(h, tab.send))
    for i in range(500):
        h.publish("rec", n=i)
        if i % 100 == 0:
            await asyncio.sleep(0)
    await until(lambda: tab.messages and tab.messages[-1].get("seq") == 500, 10)
    reader.cancel()
    gaps = [m for m in tab.messages if m["type"] == "gap"]
    recs = [m for m in tab.messages if m["type"] == "rec"]
    assert gaps, "the slow tab was not told it fell behind"
    seqs = [m["seq"] for m in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "out of order or twice"
    assert len(recs) + sum(g["lost"] for g in gaps) == 500, "every message is either shown or counted"


@pytest.mark.asyncio
async def test_a_tab_that_reconnects_goes_on_after_the_last_message_it_saw():
    h = await hub(ring=1000)
    first = Tab()
    reader = asyncio.create_task(follow(h, first.send))
    for i in range(100):
        h.publish("rec", n=i)
    await until(lambda: len(first.messages) == 100)
    reader.cancel()  # the tab closes
    for i in range(100, 150):
        h.publish("rec", n=i)
    again = Tab()
    reader = asyncio.create_task(follow(h, again.send, since=first.messages[-1]["seq"]))
    await until(lambda: len(again.messages) == 50)
    reader.cancel()
    assert [m["n"] for m in first.messages + again.messages] == list(range(150))


@pytest.mark.asyncio
async def test_an_idle_stream_pings_so_the_tab_knows_the_line_is_open():
    h = await hub()
    tab = Tab()
    reader = asyncio.create_task(follow(h, tab.send, idle=0.1))
    await until(lambda: tab.frames)
    reader.cancel()
    assert tab.frames[0] == [{"type": "ping", "seq": 0}]


@pytest.mark.asyncio
async def test_several_tabs_each_get_every_message_in_order():
    h = await hub(ring=5000)
    tabs = [Tab(), Tab(delay=0.001), Tab()]
    readers = [asyncio.create_task(follow(h, t.send)) for t in tabs]
    for i in range(1000):
        h.publish("rec", n=i)
    await until(lambda: all(len(t.messages) == 1000 for t in tabs), 10)
    for r in readers:
        r.cancel()
    for t in tabs:
        assert [m["n"] for m in t.messages] == list(range(1000))


def test_the_page_gets_a_lines_evidence_when_the_annotator_gives_it():
    from tracing.modes.web import page_record
    rec = {"line": 12, "resumed_line": None, "tid": 7, "thread": "loop", "kind": "syscall", "syscall": "epoll_wait",
           "args": "3, [...], 10, -1", "ret": "1", "ts": 1.0, "duration": 0.5, "category": "pollable",
           "note": "woken by line 11", "ready": [{"fd": 4, "role": "wakeup"}],
           "evidence": [{"claim": "woken-by", "line": 11, "tid": 8}]}
    got = page_record(rec)
    # The page draws its wakeup arrow from this evidence: the write at line 11 to this wait.
    assert got["evidence"] == [{"claim": "woken-by", "line": 11, "tid": 8}]
    del rec["evidence"]
    assert "evidence" not in page_record(rec), "no evidence field: the page says the annotator named none"
