"""pipeline.inputs.read_ahead: a demuxer on its own thread, in order, errors where they happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from vtremote.pipeline.inputs import read_ahead


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vtremote-demux"]


def test_every_item_in_order() -> None:
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert not _reader_threads()


def test_the_readers_error_comes_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise OSError("disk gone")

    got: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(source(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert not _reader_threads()


def test_stopping_early_stops_the_reader() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = read_ahead(endless(), depth=4)
    assert [next(gen) for _ in range(10)] == list(range(10))
    gen.close()  # the job is done (-frames:v) or interrupted
    assert not _reader_threads()
    count = len(produced)
    time.sleep(0.05)
    assert len(produced) == count <= 10 + 4 + 1  # read ahead by the queue's depth at most


def test_the_reader_works_while_the_consumer_does() -> None:
    """While the job handles one packet, the next ones are read (up to the queue's depth)."""
    produced = threading.Semaphore(0)

    def source() -> Iterator[int]:
        for i in range(10):
            produced.release()
            yield i

    gen = read_ahead(source(), depth=3)
    assert next(gen) == 0
    # The consumer holds item 0 and asks for nothing: the reader still gets ahead.
    assert all(produced.acquire(timeout=5) for _ in range(1 + 3))
    assert list(gen) == list(range(1, 10))
