"""``vtremoted install-service``: the files it writes parse, carry the flags, and never the
token."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vtremote.cli.serve import main as serve_main
from vtremote.cli.service import LABEL
from vtremote.server import fdlimit
from vtremote.server.config import ServerConfig

FLAGS = [
    "--listen",
    "0.0.0.0:5555",
    "--token-file",
    "/etc/vtremoted/token",
    "--tls",
    "--max-sessions",
    "2",
]


def test_launchd_plist_parses_and_runs_the_server_with_the_flags(tmp_path: Path, capsys) -> None:
    assert (
        serve_main(["install-service", "--platform", "macos", "--dir", str(tmp_path), "--", *FLAGS])
        == 0
    )
    path = tmp_path / f"{LABEL}.plist"
    doc = plistlib.loads(path.read_bytes())
    assert doc["Label"] == LABEL and doc["RunAtLoad"] is True
    assert doc["ProgramArguments"] == [sys.executable, "-m", "vtremote.cli.serve", *FLAGS]
    assert doc["KeepAlive"] == {"SuccessfulExit": False}
    # launchd's default of 256 descriptors is below what the connection caps need.
    need = fdlimit.needed(ServerConfig(max_sessions=2))
    assert doc["SoftResourceLimits"]["NumberOfFiles"] >= need
    assert doc["HardResourceLimits"]["NumberOfFiles"] >= need
    assert "not loaded" in capsys.readouterr().out
    assert serve_main(["uninstall-service", "--platform", "macos", "--dir", str(tmp_path)]) == 0
    assert not path.exists()


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    assert (
        serve_main(["install-service", "--platform", "linux", "--dir", str(tmp_path), *FLAGS]) == 0
    )
    path = tmp_path / "vtremoted.service"
    text = path.read_text()
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        elif "=" in line:
            key, value = line.split("=", 1)
            sections[current][key] = value
    assert list(sections) == ["Unit", "Service", "Install"]
    assert int(sections["Service"]["LimitNOFILE"]) >= fdlimit.needed(ServerConfig(max_sessions=2))
    assert sections["Service"]["ExecStart"].split() == [
        sys.executable,
        "-m",
        "vtremote.cli.serve",
        *FLAGS,
    ]
    assert (
        sections["Service"]["Restart"] == "on-failure"
        and sections["Install"]["WantedBy"] == "default.target"
    )
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: structural checks only")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "vtremoted.service" not in done.stderr  # no warning about our unit


def test_print_writes_nothing_and_system_units_target_multi_user(tmp_path: Path, capsys) -> None:
    assert (
        serve_main(["install-service", "--platform", "linux", "--system", "--print", *FLAGS]) == 0
    )
    out = capsys.readouterr().out
    assert "WantedBy=multi-user.target" in out and "--token-file /etc/vtremoted/token" in out


@pytest.mark.parametrize(
    "bad", [["--token", "s3cret"], ["--token=s3cret"], ["--max-sessions", "many"], ["--once"]]
)
def test_unsafe_or_wrong_flags_are_refused(tmp_path: Path, capsys, bad: list[str]) -> None:
    assert (
        serve_main(["install-service", "--platform", "linux", "--dir", str(tmp_path), "--", *bad])
        == 2
    )
    assert not (tmp_path / "vtremoted.service").exists()
    err = capsys.readouterr().err
    assert "s3cret" not in err or "--token-file" in err
