"""Which input streams go to the output: ``-map`` rules, or ffmpeg's automatic choice."""

from __future__ import annotations

import io
import logging
from typing import Any

import av

from vtremote.errors import UsageError
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.spec import MapSpec, OutputSpec

log = logging.getLogger(__name__)


def _default_streams(inputs: list[Input], out: OutputSpec) -> list[tuple[Input, Any]]:
    """ffmpeg's automatic selection over all inputs: the video stream with the most
    pixels, the audio stream with the most channels, the first subtitle stream."""
    every: list[tuple[Input, Any]] = [(inp, s) for inp in inputs for s in inp.streams]
    videos = [
        (i, s)
        for i, s in every
        if s.type == "video" and not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    audios = [(i, s) for i, s in every if s.type == "audio"]
    subs = [(i, s) for i, s in every if s.type == "subtitle"]
    picked: list[tuple[Input, Any]] = []
    if videos and not out.no_video:
        picked.append(
            max(
                videos,
                key=lambda p: (
                    p[1].codec_context.width * p[1].codec_context.height,
                    -p[0].index,
                    -p[1].index,
                ),
            )
        )
    if audios and not out.no_audio:
        picked.append(
            max(audios, key=lambda p: (p[1].codec_context.channels, -p[0].index, -p[1].index))
        )
    if subs and not out.no_subtitles:
        picked.append(subs[0])
    return picked


def _can_copy(stream: Any, format_name: str) -> bool:
    """Whether a stream of this codec can be copied into this container (asked of FFmpeg)."""
    scratch = av.open(io.BytesIO(), "w", format=format_name)
    try:
        scratch.add_stream_from_template(stream)
    except ValueError:
        return False
    finally:
        scratch.close()
    return True


def drop_uncopyable_subtitles(
    chosen: list[tuple[Input, Any]], output: Any, out: OutputSpec
) -> list[tuple[Input, Any]]:
    """Automatic selection only: leave out subtitles the container cannot hold.

    ffmpeg would convert them (SubRip -> mov_text for MP4); vtremote copies
    subtitles only, so it says what it leaves out instead of failing the run.
    """
    if "s" in out.codecs:  # -c:s given: the user asked for these subtitles
        return chosen
    kept = []
    for inp, stream in chosen:
        if stream.type == "subtitle" and not _can_copy(stream, output.format.name):
            log.warning(
                "subtitle stream %d:%d (%s) left out: %s cannot hold it and vtremote does not "
                "convert subtitles",
                inp.index,
                stream.index,
                stream.codec_context.name,
                output.format.name,
            )
            continue
        kept.append((inp, stream))
    return kept


def _match(spec: MapSpec, stream: Any) -> bool:
    if spec.type is not None:
        kind = {"v": "video", "a": "audio", "s": "subtitle", "d": "data"}[spec.type]
        return bool(stream.type == kind)
    return spec.index is None or bool(stream.index == spec.index)


def select_streams(inputs: list[Input], out: OutputSpec) -> list[tuple[Input, Any]]:
    if not out.maps:
        return _default_streams(inputs, out)
    chosen: list[tuple[Input, Any]] = []
    for spec in out.maps:
        if spec.negative:
            continue
        if spec.input >= len(inputs):
            raise UsageError(f"-map {spec.input}: there are only {len(inputs)} input(s)")
        inp = inputs[spec.input]
        matches = [s for s in inp.streams if _match(spec, s)]
        if spec.type is not None and spec.index is not None:
            matches = matches[spec.index : spec.index + 1]
        if not matches and not spec.optional:
            raise UsageError(
                f"-map {_map_text(spec)} matches no stream of input {spec.input} ({inp.spec.url})"
            )
        chosen += [(inp, s) for s in matches]
    for spec in out.maps:
        if spec.negative:
            chosen = [(i, s) for i, s in chosen if not (i.index == spec.input and _match(spec, s))]
    kinds = {
        "video": out.no_video,
        "audio": out.no_audio,
        "subtitle": out.no_subtitles,
        "data": out.no_data,
    }
    return [(i, s) for i, s in chosen if not kinds.get(s.type, False)]


def _map_text(spec: MapSpec) -> str:
    return ":".join(str(p) for p in (spec.input, spec.type, spec.index) if p is not None)
