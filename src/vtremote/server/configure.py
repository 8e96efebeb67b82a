"""CONFIGURE: what a session will do, decided before anything is opened.

:func:`plan_configure` reads the mode and the options of one CONFIGURE (after HELLO)
and returns a :class:`ConfigurePlan`: the engines to try, the
:class:`~vtremote.engines.base.StreamConfig` (a plain client's encoder delay, a
transcode session's chain), the wire compression, the window bookkeeping and the
warnings to answer with. The session applies it: it starts an engine worker
(server/worker.py) with each candidate until one opens (the next under
``--engine auto`` if one refuses), then answers with :func:`configure_ack`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vtremote import frames as framesmod
from vtremote.engines import registry
from vtremote.engines.base import MAX_FRAME_DELAY, Engine, StreamConfig
from vtremote.engines.options import check_decode_options
from vtremote.errors import UnsupportedConfigError
from vtremote.server.config import ServerConfig
from vtremote.server.transcode import TranscodeJob
from vtremote.server.window import PROBED_CLIENT
from vtremote.wire import messages
from vtremote.wire.compression import parse_compression
from vtremote.wire.connection import session_mode
from vtremote.wire.constants import PixelFormat, WireCompression
from vtremote.wire.extensions import OPT_DECODE_PIPELINE, OPT_WINDOW, split_notes

Log = logging.LoggerAdapter[logging.Logger]


@dataclass(frozen=True)
class ConfigurePlan:
    """What one CONFIGURE asks for, checked; the session applies it (module docstring)."""

    #: ``encode``, ``decode`` or ``transcode`` (VTR1.md §3.3 and our extension).
    mode: str
    codec: str
    stream: StreamConfig
    #: The engine asked for (``--engine``): see :meth:`candidates`.
    engine: str
    compression: WireCompression
    #: The client negotiated none of our extensions: the reference client or alike.
    plain_client: bool
    #: A plain client's encode session: its window needs watching (server/window.py).
    watch_window: bool
    #: That client answers a PING at once only while it waits (server/window.py).
    probed: bool
    #: A53 closed captions ride on FRAMEs and go into the packets as SEI.
    captions: bool
    #: mode=transcode: the decode and filter stages (server/transcode.py), else None.
    transcode: TranscodeJob | None
    #: Warnings to answer with whatever engine opens (decode options nobody honours).
    warnings: tuple[str, ...]
    bitrate: str
    gop: str

    @property
    def pipelined(self) -> bool:
        return self.stream.pipelined

    def candidates(self) -> list[type[Engine]]:
        """Engine classes to try in order (more than one only under ``--engine auto``);
        raises EngineUnavailableError when none can serve the stream."""
        return registry.candidates(self.engine, self.codec, self.stream.mode)


def log_request(log: Log, msg: messages.Configure, codec: str) -> None:
    """The ``CONFIGURE req`` line, before anything is checked."""
    opts = msg.option_map()
    log.info(
        "CONFIGURE req mode=%s codec=%s %dx%d pix=%d tb=%d/%d fr=%d/%d br=%s gop=%s wc=%s",
        session_mode(msg),
        codec,
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


def plan_configure(
    msg: messages.Configure, *, codec: str, client_name: str, config: ServerConfig
) -> ConfigurePlan:
    """Check one CONFIGURE and decide what the session does (raises the refusal)."""
    mode = session_mode(msg)
    opts = msg.option_map()
    # VTR1.md §3.3/§4: values other than 0/1/2 are refused (the reference used code 1).
    compression = parse_compression(msg.option("wire_compression"))
    pipelined = mode == "decode" and config.extensions and msg.option(OPT_DECODE_PIPELINE) == "1"
    plain = not (config.extensions and any(k.startswith("ext_") for k in opts))
    transcode = None
    if mode == "transcode":  # extension: decode -> filters -> encode (server/transcode.py)
        transcode = TranscodeJob.from_configure(codec, msg, extensions=config.extensions)
        stream = transcode.stream
    else:
        stream = StreamConfig.from_configure(
            codec,
            msg,
            pipelined=pipelined,
            max_delay=encoder_delay(opts, config) if mode == "encode" else MAX_FRAME_DELAY,
            least_delay=mode == "encode" and plain,
        )
    warnings = check_decode_options(opts) if mode == "decode" else []
    encodes = stream.mode == "encode"
    return ConfigurePlan(
        mode=mode,
        codec=codec,
        stream=stream,
        engine=config.engine,
        compression=compression,
        plain_client=plain,
        watch_window=encodes and mode == "encode" and plain,
        probed=client_name == PROBED_CLIENT,
        captions=encodes and opts.get("a53_cc", "0") not in ("0", "", "-1"),
        transcode=transcode,
        warnings=tuple(warnings),
        bitrate=opts.get("bitrate", "0"),
        gop=opts.get("gop", "0"),
    )


def encoder_delay(opts: dict[str, str], config: ServerConfig) -> int:
    """Frames the encoder may hold back: fewer than the client's window.

    Our client states its window (``ext_window``). A plain v1 client does not;
    the reference stops sending once ``vt_remote_inflight`` (1..128) frames are
    unanswered and then waits for a PACKET (VTR1.md §10.1), so any encoder delay
    of ``inflight`` frames or more stalls it: it gets the least delay instead
    (``StreamConfig.least_delay``): none without B-frames, what they need with.
    """
    window = opts.get(OPT_WINDOW) if config.extensions else None
    if window is None:
        return MAX_FRAME_DELAY
    try:
        return max(0, min(MAX_FRAME_DELAY, int(window) - 1))
    except ValueError:
        raise UnsupportedConfigError(f"{OPT_WINDOW}={window!r} is not a number of frames") from None


def configure_ack(
    plan: ConfigurePlan, engine: Engine, extradata: bytes, log: Log
) -> messages.ConfigureAck:
    """The CONFIGURE_ACK once ``engine`` opened: extradata, pixel format, warnings."""
    warnings = [*plan.warnings, *engine.warnings]
    if plan.transcode is not None:  # the output geometry, as an ext: note (wire.extensions)
        warnings.insert(0, plan.transcode.note)
        log.info("transcode %s", plan.transcode.describe())
    return messages.ConfigureAck(
        status=0,
        extradata=extradata,
        pix_fmt=int(_output_pix_fmt(plan, engine)),
        warnings=tuple(warnings[:255]),
    )


def log_configured(
    plan: ConfigurePlan, engine: Engine, ack: messages.ConfigureAck, log: Log
) -> None:
    """The ``CONFIGURE ok`` line and the warnings, once the ACK went out."""
    config = plan.stream
    log.info(
        "CONFIGURE ok mode=%s codec=%s %dx%d pixfmt=%s tb=%s fr=%s br=%s gop=%s wc=%s "
        "engine=%s (%s)%s",
        plan.mode,
        plan.codec,
        config.width,
        config.height,
        framesmod.AV_FORMAT[_output_pix_fmt(plan, engine)],
        config.time_base,
        config.framerate or "0",
        plan.bitrate,
        plan.gop,
        plan.compression.name.lower(),
        engine.name,
        engine.codec_name,
        " pipelined" if plan.pipelined else "",
    )
    real, notes = split_notes(ack.warnings)
    for w in real:
        log.info("CONFIGURE warning: %s", w)
    for note in notes:  # extension data riding in the warning list (ext:output=...)
        log.info("CONFIGURE note: %s", note)


def _output_pix_fmt(plan: ConfigurePlan, engine: Engine) -> PixelFormat:
    return engine.output_pix_fmt if plan.mode == "decode" else plan.stream.pix_fmt


__all__ = [
    "ConfigurePlan",
    "configure_ack",
    "encoder_delay",
    "log_configured",
    "log_request",
    "plan_configure",
]
