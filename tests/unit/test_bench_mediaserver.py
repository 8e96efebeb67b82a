"""The mediaserver benchmark's line is one vtremote-ffmpeg takes as a trimmed packet job, and
its table reads its rows (no timing here: the rows are made up)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from vtremote.bench.mediaserver import format_table, jellyfin_line
from vtremote.mediaserver.argv import parse_argv
from vtremote.mediaserver.config import MediaServerConfig
from vtremote.mediaserver.translate import MediaInfo, translate

MEDIA = MediaInfo(1920, 1080, 1.0, Fraction(30), 20.0, 0.0, "h264", 8)


def test_the_seek_line_is_a_remote_job_from_the_keyframe() -> None:
    line = jellyfin_line(Path("/m/movie.mkv"), Path("/t/out"), 10.0)
    plan = translate(parse_argv(line), MediaServerConfig(), server="s:1", media=MEDIA)
    (inp,) = plan.spec.inputs
    out = plan.spec.output
    assert plan.remote and out.remote_codec == "h264"
    assert (inp.url, inp.seek, inp.accurate_seek) == ("/m/movie.mkv", 10.0, False)
    assert out.format == "hls" and out.copyts
    assert out.format_options["start_number"] == "3"
    # Keyframes at the seek point and every segment after it, on the source's clock.
    assert out.force_key_frames is not None
    assert [float(t) for t in out.force_key_frames.split(",")[:3]] == [10.0, 13.0, 16.0]


def test_the_line_from_the_start_seeks_nothing() -> None:
    line = jellyfin_line(Path("/m/movie.mkv"), Path("/t/out"), 0.0)
    plan = translate(parse_argv(line), MediaServerConfig(), server="s:1", media=MEDIA)
    assert plan.spec.inputs[0].seek == 0 and plan.spec.inputs[0].accurate_seek


def test_table() -> None:
    rows = [
        {"case": "after a seek", "way": w, "first_segment_s": t, "startup_s": 0.5}
        for w, t in (("vtremote-ffmpeg", 2.0), ("local", 2.5))
    ]
    for r in rows:
        r["ratio"] = r["first_segment_s"] / 2.5
        r["after_startup_s"] = r["first_segment_s"] - 0.5
    text = format_table(
        {"source": {"size": "1920x1080"}, "segment_s": 3, "seek_s": 10.0, "runs": 3, "rows": rows}
    )
    assert "vtremote-ffmpeg" in text and "0.80x" in text and "1.50" in text
