"""Tests that need a real server or tool (PostgreSQL, mosquitto, Chromium, node, the
official schema) skip on a developer's machine that lacks it, and fail in CI, where
.ci/run installs everything and sets REQUIRE_TEST_SERVERS=1: there they must run."""

from __future__ import annotations

import os

import pytest


def missing(reason: str) -> None:
    if os.environ.get("REQUIRE_TEST_SERVERS") == "1":
        pytest.fail(f"{reason} (REQUIRE_TEST_SERVERS=1: CI must run this test)")
    pytest.skip(reason)
