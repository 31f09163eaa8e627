"""Tests that need a real server or tool (PostgreSQL, mosquitto, Chromium, node, the
official schema) skip on a developer's machine that lacks it, and fail in CI, where
.ci/run installs everything and sets DERGW_REQUIRE_SERVERS=1: there they must run."""

from __future__ import annotations

import os

import pytest


def missing(reason: str) -> None:
    if os.environ.get("DERGW_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (DERGW_REQUIRE_SERVERS=1: CI must run this test)")
    pytest.skip(reason)
