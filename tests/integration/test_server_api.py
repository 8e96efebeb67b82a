"""The embeddable Server API other parts build on (the CLI embeds it on 127.0.0.1:0)."""

from __future__ import annotations

import socket
import threading

import pytest

from media import testsrc_frames
from vtr_client import VTRClient
from vtremote.errors import EngineUnavailableError
from vtremote.server import Server, ServerConfig
from vtremote.wire.constants import PixelFormat


def cfg(**kw: object) -> ServerConfig:
    base: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "token": "",
        "max_sessions": 4,
        "engine": "auto",
        "idle_timeout": 30.0,
        "log_level": "info",
        "once": False,
    }
    base.update(kw)
    return ServerConfig(**base)  # type: ignore[arg-type]


def encode_some(addr: tuple[str, int], n: int = 4) -> int:
    with VTRClient(addr) as client:
        client.hello("h264")
        client.configure(320, 180, PixelFormat.NV12, (("mode", "encode"),))
        return len(client.encode(testsrc_frames(n, 320, 180, "nv12")))


def test_start_address_shutdown() -> None:
    server = Server(cfg())
    server.start()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    assert encode_some(server.address) == 4
    server.shutdown(timeout=10.0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2).close()
    server.shutdown()  # idempotent


def test_context_manager_and_null_engine() -> None:
    with Server(cfg(engine="null")) as server:
        assert encode_some(server.address, 10) == 10
        with pytest.raises(RuntimeError):
            server.start()


def test_serve_forever_until_request_shutdown() -> None:
    server = Server(cfg(engine="x264"))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        while True:
            try:
                addr = server.address
                break
            except RuntimeError:
                threading.Event().wait(0.01)
        assert encode_some(addr) == 4
    finally:
        server.request_shutdown()
        thread.join(30)
    assert not thread.is_alive()


def test_unavailable_engine_refuses_to_start() -> None:
    server = Server(cfg(engine="vaapi"))
    if server.config.engine_name == "vaapi":
        from vtremote.engines.registry import engine_class

        if engine_class("vaapi").probe("h264", "encode"):
            pytest.skip("VA-API works here")
    with pytest.raises(EngineUnavailableError, match="engine vaapi does not work here"):
        server.start()
