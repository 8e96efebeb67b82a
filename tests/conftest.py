"""Shared fixtures: the reference captures in ../shared/protocol/vectors.

CI runs in a clone with ``shared/`` beside the repository; the captures are read
from there, never copied into the repository.

Every test's phase reports are kept on its node (``item.rep_setup``, ``item.rep_call``)
so that fixtures can print a process's log when the test failed.

Helpers that tests import live in ``tests/support/`` (on ``pythonpath``, see
pyproject.toml): ``media``, ``vtr_client``, ``decoding``, ``transcode_media``,
``mediaserver_helpers``, ``interop_helpers``, ``live_processes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS_DIR = REPO_ROOT.parent / "shared" / "protocol" / "vectors"
MISSING_VECTORS = f"reference captures not found: {VECTORS_DIR} does not exist"


@dataclass(frozen=True)
class Capture:
    """One captured client byte stream and its message index."""

    name: str
    data: bytes
    index: list[dict[str, Any]]  # per message: type, length, offset (+ configure)


def _capture_names() -> list[str | None]:
    if not VECTORS_DIR.is_dir():
        return [None]
    return sorted(
        p.stem for p in VECTORS_DIR.glob("*.json") if p.with_suffix(".bin").is_file()
    ) or [None]


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS_DIR.is_dir():
        pytest.skip(MISSING_VECTORS)
    return VECTORS_DIR


@pytest.fixture(params=_capture_names(), ids=lambda n: n or "no-captures")
def capture(request: pytest.FixtureRequest) -> Capture:
    """Each capture (``NAME.bin`` indexed by ``NAME.json``) in turn."""
    name = request.param
    if name is None:
        pytest.skip(MISSING_VECTORS)
    return load_capture(name)


def load_capture(name: str) -> Capture:
    if not VECTORS_DIR.is_dir():
        pytest.skip(MISSING_VECTORS)
    data = (VECTORS_DIR / f"{name}.bin").read_bytes()
    index = json.loads((VECTORS_DIR / f"{name}.json").read_text())
    return Capture(name, data, index)


@pytest.fixture(scope="session")
def capture_loader() -> Any:
    """``capture_loader(name)`` -> :class:`Capture`; skips if the captures are missing."""
    return load_capture


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)
