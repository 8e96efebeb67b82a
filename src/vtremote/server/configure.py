"""CONFIGURE: what a session will do, and the engine that does it.

:class:`ConfigureStep` is mixed into :class:`~vtremote.server.session.Session`
(after HELLO, on the connection thread). It reads the mode and the options,
builds the :class:`~vtremote.engines.base.StreamConfig` (a plain client's encoder
delay, a transcode session's chain), starts the engine thread, which opens the
engine (the next candidate under ``--engine auto`` if one refuses), and answers
CONFIGURE_ACK with the extradata, the pixel format and the warnings.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from vtremote import frames as framesmod
from vtremote.engines import registry
from vtremote.engines.base import MAX_FRAME_DELAY, Engine, StreamConfig
from vtremote.engines.options import check_decode_options
from vtremote.errors import EngineError, UnsupportedConfigError
from vtremote.server.engine_thread import EngineThread
from vtremote.server.timestamps import TimestampMapper
from vtremote.server.transcode import TranscodeJob
from vtremote.server.window import PROBED_CLIENT, PlainWindow
from vtremote.wire import messages
from vtremote.wire.compression import parse_compression
from vtremote.wire.connection import session_mode
from vtremote.wire.extensions import OPT_DECODE_PIPELINE, OPT_WINDOW, session_codec, split_notes

if TYPE_CHECKING:
    from vtremote.server.config import ServerConfig

#: Longest an engine may take to open (hardware initialisation included).
ENGINE_OPEN_TIMEOUT = 60.0


class ConfigureStep(EngineThread):
    """The CONFIGURE handling of a Session (see the module docstring); its state is the Session's."""

    # Set up by Session.__init__ and HELLO (server/session.py).
    id: str
    cfg: ServerConfig
    codec: str
    client_name: str
    _plain_client: bool
    _captions: bool
    _engine_thread: threading.Thread | None

    def _on_configure(self, msg: messages.Configure) -> None:
        mode = session_mode(msg)
        opts = msg.option_map()
        self.codec = session_codec(self.codec, opts, self.cfg.extensions)  # ext:codecs (AV1)
        self.log.info(
            "CONFIGURE req mode=%s codec=%s %dx%d pix=%d tb=%d/%d fr=%d/%d br=%s gop=%s wc=%s",
            mode,
            self.codec,
            msg.width,
            msg.height,
            msg.pix_fmt,
            msg.time_base_num,
            msg.time_base_den,
            msg.framerate_num,
            msg.framerate_den,
            opts.get("bitrate", "0"),
            opts.get("gop", "0"),
            opts.get("wire_compression", "0"),
        )
        # VTR1.md §3.3/§4: values other than 0/1/2 are refused (the reference used code 1).
        self.compression = parse_compression(msg.option("wire_compression"))
        pipelined = (
            mode == "decode" and self.cfg.extensions and msg.option(OPT_DECODE_PIPELINE) == "1"
        )
        self._plain_client = not (self.cfg.extensions and any(k.startswith("ext_") for k in opts))
        if mode == "transcode":  # extension: decode -> filters -> encode (server/transcode.py)
            self._transcode = TranscodeJob.from_configure(
                self.codec, msg, extensions=self.cfg.extensions
            )
            config = self._transcode.stream
        else:
            max_delay = self._encoder_delay(opts) if mode == "encode" else MAX_FRAME_DELAY
            config = StreamConfig.from_configure(
                self.codec,
                msg,
                pipelined=pipelined,
                max_delay=max_delay,
                least_delay=mode == "encode" and self._plain_client,
            )
        warnings: list[str] = []
        if mode == "decode":
            warnings += check_decode_options(opts)
        self.stream = config
        if config.mode == "encode":
            self._timestamps = TimestampMapper(config.frame_ticks)
            if mode == "encode" and self._plain_client:
                self._window = PlainWindow(probed=self.client_name == PROBED_CLIENT)
            self._captions = opts.get("a53_cc", "0") not in ("0", "", "-1")
        candidates = registry.candidates(self.cfg.engine, self.codec, config.mode)
        for i, engine_cls in enumerate(candidates):
            engine = engine_cls()
            self.engine = engine
            try:
                extradata = self._start_engine(engine, config)
                self._extradata = extradata
                break
            except EngineError as e:
                if i + 1 == len(candidates):
                    raise
                # Only under --engine auto: a device that probed fine may still refuse this
                # configuration (10-bit, size); the next engine in the auto order takes it.
                self.log.warning(
                    "engine %s cannot serve %s: %s; trying %s",
                    engine.name,
                    config.describe(),
                    e,
                    candidates[i + 1].name,
                )
        warnings += engine.warnings
        if self._transcode is not None:  # the output geometry, as an ext: note (wire.extensions)
            warnings.insert(0, self._transcode.note)
            self.log.info("transcode %s", self._transcode.describe())
        pix_fmt = int(engine.output_pix_fmt) if mode == "decode" else int(config.pix_fmt)
        ack = messages.ConfigureAck(
            status=0, extradata=extradata, pix_fmt=pix_fmt, warnings=tuple(warnings[:255])
        )
        self._send(ack)
        self.log.info(
            "CONFIGURE ok mode=%s codec=%s %dx%d pixfmt=%s tb=%s fr=%s br=%s gop=%s wc=%s engine=%s (%s)%s",
            mode,
            self.codec,
            config.width,
            config.height,
            framesmod.AV_FORMAT[engine.output_pix_fmt if mode == "decode" else config.pix_fmt],
            config.time_base,
            config.framerate or "0",
            opts.get("bitrate", "0"),
            opts.get("gop", "0"),
            self.compression.name.lower(),
            engine.name,
            engine.codec_name,
            " pipelined" if pipelined else "",
        )
        real, notes = split_notes(warnings)
        for w in real:
            self.log.info("CONFIGURE warning: %s", w)
        for note in notes:  # extension data riding in the warning list (ext:output=...)
            self.log.info("CONFIGURE note: %s", note)

    def _encoder_delay(self, opts: dict[str, str]) -> int:
        """Frames the encoder may hold back: fewer than the client's window.

        Our client states its window (``ext_window``). A plain v1 client does not;
        the reference stops sending once ``vt_remote_inflight`` (1..128) frames are
        unanswered and then waits for a PACKET (VTR1.md §10.1), so any encoder delay
        of ``inflight`` frames or more stalls it: it gets the least delay instead
        (``StreamConfig.least_delay``): none without B-frames, what they need with.
        """
        window = opts.get(OPT_WINDOW) if self.cfg.extensions else None
        if window is None:
            return MAX_FRAME_DELAY
        try:
            return max(0, min(MAX_FRAME_DELAY, int(window) - 1))
        except ValueError:
            raise UnsupportedConfigError(
                f"{OPT_WINDOW}={window!r} is not a number of frames"
            ) from None

    def _start_engine(self, engine: Engine, config: StreamConfig) -> bytes:
        """Start the engine thread, which opens the engine; returns the extradata."""
        opened: Future[bytes] = Future()
        thread = threading.Thread(
            target=self._engine_main,
            args=(engine, config, opened),
            name=f"vtremoted-engine-{self.id}",
            daemon=True,
        )
        self._engine_thread = thread
        thread.start()
        try:  # raises the engine's error (EngineError, EngineUnavailableError, ConfigError...)
            return opened.result(timeout=ENGINE_OPEN_TIMEOUT)
        except FutureTimeout:
            raise EngineError(
                f"engine {engine.name} did not open within {ENGINE_OPEN_TIMEOUT:g} s"
            ) from None
        except EngineError:
            thread.join(timeout=5.0)  # it returns right after a failed open
            raise
