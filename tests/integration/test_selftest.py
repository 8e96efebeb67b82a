"""``vtremoted --self-test``: the conformance run users paste into bug reports.

Run as users run it (a subprocess, an embedded server on loopback driven by the real
client), on the software engine, which must pass every check, and on the null engine,
whose placeholder output must fail the checks that look at pictures, with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
HW_ENGINE = os.environ.get("VTREMOTE_HW_ENGINE", "")

#: The checks every step makes (besides ``session``, which carries speed and latency).
STEP_CHECKS = {
    "encode": {"session", "frames", "timestamps", "keyframes", "bitrate", "ssim"},
    "decode": {"session", "frames", "timestamps", "format", "ssim"},
    "transcode": {"session", "frames", "timestamps", "keyframes", "scale", "ssim"},
}


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``vtremoted ARGS`` as a user runs it; generous bounds for a loaded machine."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "vtremote.cli.serve", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )


def self_test(*args: str) -> tuple[int, str, str]:
    proc = serve("--self-test", "--quick", *args)
    return proc.returncode, proc.stdout, proc.stderr


def checks_by_key(report: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(c["codec"], c["pix_fmt"], c["step"], c["name"]): c for c in report["checks"]}


@pytest.mark.timeout(300)  # ~35 s on a loaded 2-core machine; x265 is the slow part
def test_software_engine_passes_every_check() -> None:
    rc, out, err = self_test("--engine", "x264", "--json")
    report = json.loads(out)
    failed = [c for c in report["checks"] if c["status"] != "PASS"]
    assert not failed, f"{json.dumps(failed, indent=1)}\n{err}"
    assert rc == 0, err
    assert report["format"] == 1
    assert set(report["versions"]) >= {"vtremote", "pyav", "ffmpeg", "os", "host"}
    assert report["settings"]["quick"] is True
    assert [e["engine"] for e in report["engines"]] == ["x264"]
    assert report["summary"] == {
        "passed": len(report["checks"]),
        "failed": 0,
        "skipped": 0,
        "ok": True,
    }
    checks = checks_by_key(report)
    for codec, pix_fmt in (("h264", "nv12"), ("hevc", "nv12"), ("hevc", "p010")):
        for step, names in STEP_CHECKS.items():
            if step == "transcode" and pix_fmt == "p010":
                continue
            for name in names:
                assert (codec, pix_fmt, step, name) in checks, (codec, pix_fmt, step, name)
    # The numbers behind the lines are in the report.
    bitrate = checks[("h264", "nv12", "encode", "bitrate")]["values"]
    assert abs(bitrate["deviation"]) <= bitrate["tolerance"] == 0.10
    assert checks[("hevc", "nv12", "decode", "ssim")]["values"]["mean"] >= 0.99
    assert checks[("hevc", "p010", "encode", "ssim")]["values"]["mean"] >= 0.90
    assert checks[("h264", "nv12", "encode", "session")]["values"]["fps"] > 0


def test_null_engine_fails_the_picture_checks_with_reasons() -> None:
    rc, out, _ = self_test("--engine", "null")
    assert rc == 1
    lines = out.splitlines()
    assert lines[-1].startswith("self-test null: ") and "FAILED" in lines[-1]
    fails = [line for line in lines if line.startswith("FAIL")]
    # Placeholder packets cannot be decoded, placeholder pictures are grey.
    assert any("null h264/nv12 encode.ssim:" in line and "decoder" in line for line in fails), out
    assert any(
        "null h264/nv12 decode.ssim: mean SSIM" in line and "< 0.99" in line for line in fails
    ), out
    assert any(
        "null h264/nv12 encode.bitrate:" in line and "allowed ±10%" in line for line in fails
    ), out
    # The wire path itself works: every session ran and counted one result per frame.
    assert all(
        line.startswith("PASS") for line in lines if ".session:" in line or ".frames:" in line
    ), out


@pytest.mark.skipif(HW_ENGINE == "vaapi", reason="a VA-API device is configured")
def test_a_named_engine_that_cannot_load_fails_with_the_reason() -> None:
    rc, out, _ = self_test("--engine", "vaapi")
    assert rc == 1
    assert out.startswith("FAIL  vaapi server.start: embedded vtremoted --engine vaapi ")
    assert "h264_vaapi" in out


def test_quick_and_json_need_self_test() -> None:
    proc = serve("--json")
    assert proc.returncode == 2
    assert "--quick and --json go with --self-test" in proc.stderr


def test_list_engines_points_to_the_self_test() -> None:
    proc = serve("--list-engines")
    assert proc.returncode == 0
    assert "vtremoted --self-test" in proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("auto: ")


@pytest.mark.hardware
@pytest.mark.skipif(not HW_ENGINE, reason="set VTREMOTE_HW_ENGINE to a hardware engine")
@pytest.mark.timeout(300)
def test_hardware_engine_passes_every_check_it_runs() -> None:
    """The self-test on the device VTREMOTE_HW_ENGINE names: nothing fails, something ran."""
    rc, out, err = self_test("--engine", HW_ENGINE, "--json")
    report = json.loads(out)
    failed = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert not failed, f"{json.dumps(failed, indent=1)}\n{err}"
    assert rc == 0 and report["summary"]["passed"] > 0
    assert report["engines"][0]["hardware"] is True
