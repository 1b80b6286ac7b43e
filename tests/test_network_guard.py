"""The suite's guard: a connection beyond loopback is refused before any packet leaves, and recorded."""

from __future__ import annotations

import socket

import pytest

from tests import conftest


class _FakeSocket:
    family = socket.AF_INET


def test_non_loopback_is_refused_and_recorded():
    before = len(conftest._escapes)
    with pytest.raises(ConnectionRefusedError, match="only 127.0.0.1"):
        conftest._loopback_only(_FakeSocket(), ("203.0.113.7", 443))  # checked only, never connected
    assert conftest._escapes[before:] == ["203.0.113.7:443"]
    del conftest._escapes[before:]  # this test provoked it on purpose


def test_loopback_is_allowed():
    conftest._loopback_only(_FakeSocket(), ("127.0.0.1", 5432))
    conftest._loopback_only(_FakeSocket(), ("localhost", 8501))


def test_the_guard_is_installed_on_every_socket():
    assert socket.socket.connect is conftest._guarded_connect
    assert socket.socket.connect_ex is conftest._guarded_connect_ex
