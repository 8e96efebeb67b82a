"""Setters of the ``-vt_remote_*`` options (the reference client's) and of the job-wide ones.

The connection options stand before an ``-i`` (for a remote decoder) or after the last one (for
the remote encoder): each setter writes the :class:`~vtremote.pipeline.spec.RemoteOptions` of the
spec it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from vtremote.errors import UsageError
from vtremote.pipeline.ffmpeg_options.levels import parse_loglevel, parse_reference_loglevel
from vtremote.pipeline.ffmpeg_options.option import InputSetter, Occurrence, OutputSetter
from vtremote.pipeline.spec import InputSpec, JobSpec, OutputSpec, RemoteOptions
from vtremote.pipeline.values import parse_bool, parse_int

RemoteSetter = Callable[[RemoteOptions, Occurrence], None]


def _bounded(attr: str, low: int, high: int) -> RemoteSetter:
    def set_bounded(remote: RemoteOptions, occ: Occurrence) -> None:
        number = parse_int(occ.value, occ.label)
        if not low <= number <= high:
            raise UsageError(f"{occ.label} {occ.value} is outside {low}..{high}")
        setattr(remote, attr, number)

    return set_bounded


def _text(attr: str) -> RemoteSetter:
    def set_text(remote: RemoteOptions, occ: Occurrence) -> None:
        setattr(remote, attr, occ.value)

    return set_text


def _tls(remote: RemoteOptions, occ: Occurrence) -> None:
    remote.tls = parse_bool(occ.value, "-vt_remote_tls")


def _compression(remote: RemoteOptions, occ: Occurrence) -> None:
    key = occ.value.lower()
    if key not in ("none", "lz4", "zstd", "auto", "0", "1", "2"):
        raise UsageError(
            f"-vt_remote_wire_compression {occ.value!r} is not none, lz4, zstd or auto"
        )
    remote.compression = key


def _fallback(remote: RemoteOptions, occ: Occurrence) -> None:
    if occ.value not in ("local", "none"):
        raise UsageError(f"-vt_remote_fallback {occ.value!r} is not local or none")
    remote.fallback = occ.value


#: Option key -> what it sets in RemoteOptions.
REMOTE_SETTERS: dict[str, RemoteSetter] = {
    "vt_remote_host": _text("host"),
    "vt_remote_token": _text("token"),
    "vt_remote_tls": _tls,
    "vt_remote_tls_fingerprint": _text("tls_fingerprint"),
    "vt_remote_tls_ca": _text("tls_ca"),
    "vt_remote_wire_compression": _compression,
    "vt_remote_inflight": _bounded("inflight", 1, 128),
    "vt_remote_timeout_ms": _bounded("timeout_ms", 100, 60000),
    "vt_remote_fallback": _fallback,
    "vt_remote_parallel": _bounded("parallel", 0, 64),
}


def remote_of_input(key: str) -> InputSetter:
    setter = REMOTE_SETTERS[key]

    def set_input_remote(spec: InputSpec, occ: Occurrence) -> None:
        setter(spec.remote, occ)

    return set_input_remote


def remote_of_output(key: str) -> OutputSetter:
    setter = REMOTE_SETTERS[key]

    def set_output_remote(out: OutputSpec, occ: Occurrence) -> None:
        setter(out.remote, occ)

    return set_output_remote


# --- the whole job -----------------------------------------------------------------------------


def job_field(name: str, value: object) -> Callable[[JobSpec, Occurrence], None]:
    """Set ``JobSpec.<name>`` to a fixed value (``-y``: overwrite = True)."""

    def set_job_field(job: JobSpec, occ: Occurrence) -> None:
        setattr(job, name, value)

    return set_job_field


def set_loglevel(job: JobSpec, occ: Occurrence) -> None:
    job.loglevel = parse_loglevel(occ.value)


def set_reference_loglevel(job: JobSpec, occ: Occurrence) -> None:
    job.loglevel = parse_reference_loglevel(occ.value)
