"""The tone-mapping filter: its chain syntax (wire), the transform and LUT (engines), the
graph it becomes, the frame path's copy of it, and how Jellyfin's chains map onto it."""

from __future__ import annotations

import re
from fractions import Fraction

import av
import numpy as np
import pytest

from vtremote.client.packet_transcoder import TranscodeOffer
from vtremote.engines import tonemap as tm
from vtremote.errors import ConfigError, UnsupportedConfigError
from vtremote.mediaserver.filters import Geometry as MsGeometry
from vtremote.mediaserver.filters import translate_chain
from vtremote.wire import colours
from vtremote.wire import extensions as ext
from vtremote.wire import filters as vf

# --- wire: the allowlist ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tonemap", "tonemap=algorithm=bt2390:peak=0:desat=0"),
        ("tonemap=hable", "tonemap=algorithm=hable:peak=0:desat=0"),
        ("tonemap=mobius:100:0.5", "tonemap=algorithm=mobius:peak=100:desat=0.5"),
        ("tonemap=tonemap=reinhard:desat=2", "tonemap=algorithm=reinhard:peak=0:desat=2"),
        ("tonemap=algorithm=clip:peak=12.5", "tonemap=algorithm=clip:peak=12.5:desat=0"),
    ],
)
def test_tonemap_parses_to_its_canonical_text(text: str, canonical: str) -> None:
    chain = vf.parse(text)
    assert vf.serialize(chain) == canonical
    assert vf.parse(canonical) == chain


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("tonemap=gamma", UnsupportedConfigError, "tonemap algorithm 'gamma' is not supported"),
        ("tonemap=hable:param=1", UnsupportedConfigError, "tonemap option 'param'"),
        ("tonemap=hable:peak=iw", UnsupportedConfigError, "expressions are not supported"),
        ("tonemap=hable:peak=1000", ConfigError, r"peak=1000 is outside 0..100"),
        ("tonemap=hable:peak=0.5", ConfigError, "below SDR white"),
        ("tonemap=hable:desat=-1", ConfigError, "not a decimal number"),
        ("tonemap=hable:desat=101", ConfigError, r"desat=101 is outside 0..100"),
        ("tonemap=hable:peak=1e3", UnsupportedConfigError, "expressions"),
        ("tonemap=hable:peak=100:peak=50", ConfigError, "given twice"),
    ],
)
def test_tonemap_refuses_what_it_cannot_run(
    text: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        vf.parse(text)


def test_tonemap_is_offered_in_ext_transcode_only() -> None:
    assert "tonemap" in vf.ALLOWED
    cap = ext.transcode_capability(("hevc",), vf.ALLOWED)
    assert cap.startswith("ext:transcode=") and "tonemap" in cap
    # What a v1 peer reads of it: one extension, no codec name.
    codecs, exts = ext.split_capabilities(["h264", "hevc", cap])
    assert codecs == ("h264", "hevc") and exts == {"ext:transcode"}
    # A server of ours that predates the filter is refused it before any CONFIGURE.
    old = TranscodeOffer("s:1", ("hevc",), tuple(f for f in vf.ALLOWED if f != "tonemap"), "x264")
    assert old.refusal("hevc", vf.parse("tonemap=hable")) == "s:1 has no server-side filter tonemap"


def test_tonemap_tags_replace_the_sources() -> None:
    chain = vf.parse("setparams=color_trc=smpte2084,scale=640:-2,tonemap=hable,setparams=range=pc")
    forced = vf.forced_color_options(chain)
    assert forced == {
        "color_range": "2",
        "color_primaries": str(colours.PRIMARIES.names["bt709"]),
        "color_trc": str(colours.TRANSFER.names["bt709"]),
        "colorspace": str(colours.MATRIX.names["bt709"]),
    }
    assert vf.forced_color_options(vf.parse("setparams=color_trc=smpte2084")) == {}
    steps, out = vf.graph_steps(chain, vf.Geometry(1280, 720, Fraction(1, 24)))
    assert ("tonemap", "algorithm=hable:peak=0:desat=0") in steps
    assert (out.width, out.height) == (640, 360)


# --- engines: the transform ---------------------------------------------------------------------


def test_pq_round_trip_and_reference_points() -> None:
    nits = np.array([0.0, 1.0, 100.0, 1000.0, 10000.0])
    signal = tm.pq_inverse_eotf(nits / 100.0)
    assert np.allclose(tm.pq_eotf(signal) * 100.0, nits, rtol=1e-6, atol=1e-6)
    # ST 2084: 100 cd/m² is code 0.508, 1000 cd/m² 0.752.
    assert signal[2] == pytest.approx(0.508, abs=1e-3)
    assert signal[3] == pytest.approx(0.752, abs=1e-3)


@pytest.mark.parametrize("algorithm", tm.ALGORITHMS)
def test_tone_curves_are_monotonic_and_end_at_white(algorithm: str) -> None:
    x = np.linspace(0.0, 100.0, 2001)
    y = tm.tone_curve(x, algorithm, 100.0)
    assert np.all(np.diff(y) >= -1e-9)
    assert y[-1] == pytest.approx(1.0, abs=1e-3)
    assert y[0] == pytest.approx(0.0, abs=1e-6)


def test_greys_stay_grey_and_black_stays_black() -> None:
    t = tm.ToneMap("bt2390", 100.0, 0.0, "smpte2084")
    grey = np.linspace(0, 1, 11)[:, None].repeat(3, axis=1)
    out = tm.transform(grey, t)
    assert np.allclose(out[:, 0], out[:, 1], atol=1e-6)
    assert np.allclose(out[:, 1], out[:, 2], atol=1e-6)
    assert out[0].max() < 1e-6 and np.all(np.diff(out[:, 0]) >= 0)
    # PQ's 100 cd/m² lands mid-scale in SDR, not clipped, not black.
    mid = tm.transform(np.full((1, 3), float(tm.pq_inverse_eotf(np.array(1.0)))), t)
    assert 0.3 < mid[0, 0] < 0.9


def test_hlg_white_is_near_sdr_white_for_clip() -> None:
    t = tm.ToneMap("clip", 0.0, 0.0, "arib-std-b67")
    out = tm.transform(np.array([[0.75, 0.75, 0.75], [1.0, 1.0, 1.0]]), t)
    assert out[1, 0] == pytest.approx(1.0)  # peak clips to white
    assert 0.85 < out[0, 0] <= 1.0  # HLG reference white (75 %) is bright


def test_cube_file_is_written_once_and_well_formed() -> None:
    t = tm.ToneMap("hable", 100.0, 0.0, "smpte2084")
    path = tm.cube_file(t)
    assert tm.cube_file(t) is path
    lines = path.read_text().splitlines()
    assert lines[1] == f"LUT_3D_SIZE {tm.LUT_SIZE}"
    assert len(lines) == 2 + tm.LUT_SIZE**3
    table = np.loadtxt(lines[2:])
    assert table.min() >= 0 and table.max() <= 1


def test_lut_files_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer asking for ever new parameter sets gets old files removed, not unbounded disk."""
    monkeypatch.setattr(tm, "MAX_CACHED_LUTS", 1)
    monkeypatch.setattr(tm, "_EVICT_AFTER", -1.0)
    first = tm.cube_file(tm.ToneMap("clip", 3.0, 0.0, "smpte2084"))
    second = tm.cube_file(tm.ToneMap("clip", 4.0, 0.0, "smpte2084"))
    assert second.exists() and not first.exists()
    assert len(tm._cache) == 1


def test_graph_steps_follow_the_source_tags() -> None:
    pq = tm.graph_steps("hable", 100, 0, transfer=16, matrix=9, full_range=False)
    assert [n for n, _ in pq] == ["scale", "format", "lut3d", "scale", "setparams"]
    assert "in_color_matrix=bt2020:in_range=tv" in pq[0][1]
    assert "smpte2084-hable" in pq[2][1]
    hlg = tm.graph_steps("hable", 0, 0, transfer=18, matrix=9, full_range=True)
    assert "in_range=pc" in hlg[0][1] and "arib-std-b67-hable" in hlg[2][1]
    assert tm.graph_steps("hable", 0, 0, transfer=1, matrix=1, full_range=False) == []


def test_expand_walks_setparams_before_the_tonemap() -> None:
    chain = vf.parse("setparams=color_trc=arib-std-b67,tonemap=mobius,null,format=yuv420p")
    steps, _ = vf.graph_steps(chain, vf.Geometry(64, 64, Fraction(1, 24)))
    out = tm.expand(chain, steps + [("format", "pix_fmts=nv12")], tm.SourceTags(16, 9, False))
    names = [n for n, _ in out]
    assert names == ["setparams", "scale", "format", "lut3d", "scale", "setparams", "format"] + [
        "format"
    ]
    assert "arib-std-b67-mobius" in out[3][1]


def _hdr_frame(value: int) -> av.VideoFrame:
    y = np.full((64, 64), value, np.uint16)
    uv = np.full((32, 64), 512, np.uint16)
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, uv]), format="yuv420p10le")
    frame.color_trc, frame.colorspace, frame.color_primaries, frame.color_range = 16, 9, 9, 1
    return frame


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "p010le"])
def test_local_chain_tone_maps_on_this_machine(pix_fmt: str) -> None:
    """The frame path runs the same LUT: PQ 1000 cd/m² grey comes out bright SDR, tagged,
    from either 10-bit layout a decoder gives (planar, or P010 from hardware)."""
    chain = tm.local_chain(
        [("tonemap", "algorithm=hable:peak=100:desat=0"), ("format", "yuv420p")], 16, 9, False
    )
    g = av.filter.Graph()
    src = g.add_buffer(width=64, height=64, format=pix_fmt, time_base=Fraction(1, 24))
    nodes = [src] + [g.add(n, a) for n, a in chain] + [g.add("buffersink")]
    g.link_nodes(*nodes).configure()
    code = round(float(tm.pq_inverse_eotf(np.array(10.0))) * 876 + 64)  # 1000 cd/m²
    frame = _hdr_frame(code)
    if pix_fmt != "yuv420p10le":
        tags = frame.color_trc, frame.colorspace, frame.color_primaries, frame.color_range
        frame = frame.reformat(format=pix_fmt)
        frame.color_trc, frame.colorspace, frame.color_primaries, frame.color_range = tags
    g.vpush(frame)
    out = g.vpull()
    assert (int(out.color_trc), int(out.colorspace), int(out.color_primaries)) == (1, 1, 1)
    y = out.to_ndarray()[:64]
    expected = tm.transform(np.full((1, 3), (code - 64) / 876), tm.ToneMap("hable", 100.0))
    assert abs(float(y.mean()) - (16 + 219 * expected[0, 0])) < 3
    # FFmpeg's own tonemap (no algorithm= key) is left to FFmpeg.
    assert tm.local_chain([("tonemap", "tonemap=hable")], 16, 9, False) == [
        ("tonemap", "tonemap=hable")
    ]


# --- mediaserver: Jellyfin's chains -------------------------------------------------------------

JELLYFIN = {
    "tonemapx=tonemap=bt2390:desat=0:peak=100:t=bt709:m=bt709:p=bt709:format=yuv420p": (
        "tonemap=algorithm=bt2390:peak=100:desat=0,format=yuv420p"
    ),
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0:"
    "peak=100,zscale=t=bt709:m=bt709:r=tv,format=yuv420p": (
        "tonemap=algorithm=hable:peak=100:desat=0,format=yuv420p"
    ),
    "hwupload,tonemap_opencl=format=nv12:p=bt709:t=bt709:m=bt709:tonemap=mobius:peak=100:desat=0,"
    "hwdownload,format=nv12": "tonemap=algorithm=mobius:peak=100:desat=0,format=nv12",
    "tonemap_cuda=format=p010:p=bt709:t=bt709:m=bt709:tonemap=reinhard:peak=400:desat=0.5": (
        "tonemap=algorithm=reinhard:peak=100:desat=0.5,format=p010le"
    ),
    "tonemap_vaapi=format=nv12:p=bt709:t=bt709:m=bt709:extra_hw_frames=32": (
        "tonemap=algorithm=bt2390:peak=0:desat=0,format=nv12"
    ),
    "libplacebo=format=yuv420p:w=1920:h=1080:tonemapping=bt.2390:peak_detect=0:"
    "color_primaries=bt709:color_trc=bt709:colorspace=bt709": (
        "scale=1920:1080,tonemap=algorithm=bt2390:peak=0:desat=0,format=yuv420p"
    ),
    "tonemapx=tonemap=gamma:peak=0.5:desat=x": "tonemap=algorithm=bt2390:peak=0:desat=0",
    "libplacebo=tonemapping=spline:format=nv12": (
        "tonemap=algorithm=bt2390:peak=0:desat=0,format=nv12"
    ),
}


@pytest.mark.parametrize("line", sorted(JELLYFIN))
def test_jellyfin_tone_mappers_become_the_server_filter(line: str) -> None:
    result = translate_chain(line, MsGeometry(3840, 2160))
    assert result.chain == JELLYFIN[line]
    assert result.tone_mapped
    unknown = "gamma" in line or "spline" in line
    assert any("is not available here; bt2390 is used" in n for n in result.notes) == unknown
    assert vf.parse(result.chain or "")  # the server's allowlist takes it as it is


def test_filters_list_tonemapx_so_jellyfin_tone_maps() -> None:
    from vtremote.mediaserver.config import MediaServerConfig
    from vtremote.mediaserver.info import filters_text, help_text

    assert re.search(r"^ \.S\. tonemapx\s+V->V", filters_text(), re.MULTILINE)
    text, known = help_text(MediaServerConfig(), "filter=tonemapx")
    assert known and text.startswith("Filter tonemapx")
