"""The checks of one step, each turning measured values into one :class:`Check`.

Thresholds, and why they are what they are:

* Bitrate: the output's average over the whole 10 s clip is within
  :data:`BITRATE_TOLERANCE` (10 %) of the target. Rate control in ABR/VBR mode
  (x264, x265, NVENC, QSV, VideoToolbox) aims at the average over the stream and
  lands within a few percent over ten seconds; the margin covers the first IDR's
  extra cost and the drift a VBV-less VBR allows. An encoder that ignores the
  target (a constant-QP fallback, a bitrate read in the wrong unit) misses by 2x
  or more and fails.
* SSIM of an encode against the source: :data:`ENCODE_SSIM` per codec. The
  grainy source at the chosen bitrate scores 0.94-0.96 with x264/x265 here; a
  hardware encoder of reasonable quality loses a little more on grain; a broken
  one (wrong chroma layout, wrong stride, garbage) scores far below. Neighbouring
  source frames score 0.80-0.86 against each other, so each output frame must also
  resemble its own source frame more than the frames beside it (a stream one frame
  early or late fails that, whatever its mean).
* SSIM of a decode against this machine's FFmpeg decode of the same clip:
  :data:`DECODE_SSIM`. H.264 and HEVC decoding is exact by the standards, so
  anything below ~1.0 is a wrong picture, frame order or format.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from vtremote.selftest.report import Check, Status
from vtremote.selftest.ssim import frame_ssim

BITRATE_TOLERANCE = 0.10
#: Smallest mean SSIM of an encode (or a transcode) against the source, per codec.
ENCODE_SSIM = {"h264": 0.90, "hevc": 0.90, "av1": 0.90}
#: Smallest mean SSIM of a remote decode against a local decode of the same clip.
DECODE_SSIM = 0.99
#: Pictures compared per SSIM check at most (evenly spread; numpy costs ~30 ms each at 720p).
SSIM_SAMPLES = 40
#: Pictures also compared with their source's neighbours, to catch output out of step.
ALIGN_SAMPLES = 8


@dataclass
class Scope:
    """Where checks go: one engine, codec, pixel format and step."""

    engine: str
    codec: str
    pix_fmt: str
    step: str
    out: Callable[[Check], None]
    checks: list[Check] = field(default_factory=list)

    def add(
        self, name: str, ok: bool | None, detail: str, reason: str = "", **values: Any
    ) -> Check:
        """Record one check: ok True PASS, False FAIL, None SKIP."""
        status: Status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        check = Check(
            self.engine, self.codec, self.pix_fmt, self.step, name, status, detail, reason, values
        )
        self.checks.append(check)
        self.out(check)
        return check


def frame_index(ts: int | None, time_base: Fraction, rate: int) -> int | None:
    """The source frame a timestamp stands for (None for no timestamp)."""
    return None if ts is None else round(ts * time_base * rate)


def check_count(scope: Scope, got: int, want: int, what: str) -> None:
    scope.add(
        "frames",
        got == want,
        f"{got} {what} for {want} frames",
        "" if got == want else f"expected {want} {what}, got {got}",
        got=got,
        want=want,
    )


def check_packet_order(scope: Scope, packets: Sequence[av.Packet[Any]]) -> None:
    """dts strictly increasing, dts <= pts, every packet with both timestamps."""
    problems: list[str] = []
    last: int | None = None
    for i, p in enumerate(packets):
        if p.pts is None or p.dts is None:
            problems.append(f"packet {i} has pts={p.pts} dts={p.dts}")
        elif last is not None and p.dts <= last:
            problems.append(f"packet {i} dts {p.dts} <= previous dts {last}")
        elif p.dts > p.pts:
            problems.append(f"packet {i} dts {p.dts} > pts {p.pts}")
        last = p.dts if p.dts is not None else last
    detail = f"{len(packets)} packets, dts strictly increasing, dts <= pts"
    scope.add(
        "timestamps",
        not problems,
        detail,
        "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""),
        problems=len(problems),
    )


def check_frame_order(scope: Scope, frames: Sequence[av.VideoFrame]) -> None:
    """Decoded frames in presentation order: pts strictly increasing."""
    pts = [f.pts for f in frames]
    bad = [
        i
        for i, (a, b) in enumerate(zip(pts, pts[1:], strict=False), start=1)
        if a is None or b is None or b <= a
    ]
    scope.add(
        "timestamps",
        not bad,
        f"{len(pts)} frames, pts strictly increasing",
        f"frame {bad[0]} has pts {pts[bad[0]]} after {pts[bad[0] - 1]}" if bad else "",
        problems=len(bad),
    )


def check_keyframes(
    scope: Scope,
    packets: Sequence[av.Packet[Any]],
    time_base: Fraction,
    rate: int,
    gop: int,
    count: int,
) -> None:
    """A keyframe at every GOP start (frame 0, gop, 2*gop, ...) and no longer gap."""
    keys = sorted(
        i
        for p in packets
        if p.is_keyframe and (i := frame_index(p.pts, time_base, rate)) is not None
    )
    missing = [i for i in range(0, count, gop) if i not in set(keys)]
    gaps = [b - a for a, b in zip(keys, [*keys[1:], count], strict=False)]
    longest = max(gaps, default=count)
    extra = len([k for k in keys if k % gop])
    # Allowed: one unasked keyframe per GOP (a scene cut); more is an encoder ignoring the GOP.
    ok = not missing and longest <= gop and extra <= len(range(0, count, gop))
    reason = ""
    if extra > len(range(0, count, gop)):
        reason = f"{extra} keyframes off the GOP grid: the encoder ignores the GOP"
    elif missing:
        reason = f"no keyframe at frame(s) {', '.join(map(str, missing[:5]))}"
    elif longest > gop:
        reason = f"{longest} frames between keyframes, GOP is {gop}"
    scope.add(
        "keyframes",
        ok,
        f"{len(keys)} keyframes, one every {gop} frames" + (f" (+{extra} extra)" if extra else ""),
        reason,
        keyframes=keys,
        gop=gop,
    )


def check_bitrate(
    scope: Scope, packets: Sequence[av.Packet[Any]], seconds: float, target: int
) -> None:
    size = sum(p.size for p in packets)
    actual = size * 8 / seconds
    off = actual / target - 1
    ok = abs(off) <= BITRATE_TOLERANCE
    scope.add(
        "bitrate",
        ok,
        f"{actual / 1000:.0f} kb/s for a {target / 1000:.0f} kb/s target ({off:+.1%})",
        ""
        if ok
        else f"{actual / 1000:.0f} kb/s is {off:+.1%} off the {target / 1000:.0f} kb/s target, "
        f"allowed ±{BITRATE_TOLERANCE:.0%}",
        bits_per_second=round(actual),
        target=target,
        deviation=round(off, 4),
        tolerance=BITRATE_TOLERANCE,
    )


def check_ssim(
    scope: Scope,
    reference: dict[int, av.VideoFrame],
    output: dict[int, av.VideoFrame],
    threshold: float,
    against: str,
) -> None:
    """Mean luma SSIM of the output against ``reference`` over up to SSIM_SAMPLES frames."""
    common = sorted(set(reference) & set(output))
    if not common:
        scope.add(
            "ssim",
            False,
            "",
            f"no output frame to compare with the {against} ({len(output)} decoded)",
            threshold=threshold,
        )
        return
    step = max(1, len(common) // SSIM_SAMPLES)
    try:
        scores = [frame_ssim(reference[i], output[i]) for i in common[::step]]
        shifted = _shifted(reference, output, common[:: max(1, len(common) // ALIGN_SAMPLES)])
    except ValueError as e:  # sizes differ
        scope.add("ssim", False, "", str(e), threshold=threshold)
        return
    mean, low = statistics.fmean(scores), min(scores)
    ok = mean >= threshold and not shifted
    reasons = []
    if mean < threshold:
        reasons.append(f"mean SSIM {mean:.4f} < {threshold} against the {against}")
    if shifted:
        i, j = shifted
        reasons.append(f"output frame {i} looks like {against} frame {j}: pictures out of step")
    scope.add(
        "ssim",
        ok,
        f"mean {mean:.4f}, min {low:.4f} against the {against} over {len(scores)} frames "
        f"(threshold {threshold}), each closest to its own frame",
        "; ".join(reasons),
        mean=round(mean, 5),
        min=round(low, 5),
        frames=len(scores),
        threshold=threshold,
    )


def _shifted(
    reference: dict[int, av.VideoFrame], output: dict[int, av.VideoFrame], sample: Sequence[int]
) -> tuple[int, int] | None:
    """The first sampled output frame that resembles a neighbour of its source frame more
    than the frame itself (an encoder or decoder one frame early or late), else None.

    Needed because the grain makes neighbouring source frames differ: they score 0.80-0.86
    against each other, close to what a lossy encode scores against its own frame."""
    for i in sample:
        own = frame_ssim(reference[i], output[i])
        for j in (i - 1, i + 1):
            if j in reference and frame_ssim(reference[j], output[i]) > own:
                return i, j
    return None
