"""The self-test's results: one :class:`Check` per line, a summary, the JSON report."""

from __future__ import annotations

import platform
import socket
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import av

import vtremote

Status = Literal["PASS", "FAIL", "SKIP"]

#: Version of the JSON layout below (a reader checks it before reading anything else).
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Check:
    """One check of one engine, codec, pixel format and step (encode, decode, transcode).

    ``detail`` says what was measured, ``reason`` why it failed or was skipped;
    ``values`` holds the numbers behind it for the JSON report.
    """

    engine: str
    codec: str
    pix_fmt: str
    step: str
    name: str
    status: Status
    detail: str = ""
    reason: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.codec == "-":  # about the engine as a whole
            return f"{self.engine} {self.step}.{self.name}"
        return f"{self.engine} {self.codec}/{self.pix_fmt} {self.step}.{self.name}"

    def line(self) -> str:
        """``PASS  x264 h264/nv12 encode.frames: 300 packets for 300 frames``."""
        text = self.reason if self.status != "PASS" and self.reason else self.detail
        return f"{self.status:<4}  {self.label}: {text}".rstrip(": ")


def versions() -> dict[str, str]:
    """What a bug report needs to place a run: our version, PyAV's, FFmpeg's, the host."""
    return {
        "vtremote": vtremote.__version__,
        "pyav": av.__version__,
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", "?")),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "host": socket.gethostname(),
    }


@dataclass
class Report:
    """Every check of a run, the engines it covered and the settings it used."""

    settings: dict[str, Any]
    engines: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        """True when at least one check ran and none failed."""
        return self.count("FAIL") == 0 and self.count("PASS") > 0

    def summary_line(self) -> str:
        names = ", ".join(e["engine"] for e in self.engines if e["tested"]) or "no engine"
        v = versions()
        verdict = "all checks passed" if self.ok else "FAILED"
        return (
            f"self-test {names}: {self.count('PASS')} passed, {self.count('FAIL')} failed, "
            f"{self.count('SKIP')} skipped: {verdict} (vtremote {v['vtremote']}, "
            f"PyAV {v['pyav']}, FFmpeg {v['ffmpeg']}, {v['os']} {v['machine']})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "versions": versions(),
            "settings": self.settings,
            "engines": self.engines,
            "checks": [asdict(c) for c in self.checks],
            "summary": {
                "passed": self.count("PASS"),
                "failed": self.count("FAIL"),
                "skipped": self.count("SKIP"),
                "ok": self.ok,
            },
        }
