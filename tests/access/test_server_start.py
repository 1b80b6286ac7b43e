"""`streamlit run app.py` on an address beyond this machine: refused at server start without sign-in (a
clear message, nothing served), started with sign-in configured (every visitor then signs in first)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT, _free_port, start_app, stop_app

AUTH = """[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "a-test-cookie-secret-of-some-length"
client_id = "marketing-suite"
client_secret = "not-a-real-secret"
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
"""


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_without_sign_in_a_non_loopback_address_is_refused_at_start(tmp_path, address):
    no_secrets = tmp_path / "secrets.toml"
    no_secrets.write_text('database_url = "sqlite:///' + str(tmp_path / "app.db") + '"\n')
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), f"--server.address={address}",
         f"--server.port={port}", "--server.headless=true", f"--secrets.files={no_secrets}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-2000:]
    assert "Marketing Suite refuses to start" in out and "no sign-in is configured" in out
    assert "bind it to 127.0.0.1" in out and "[auth]" in out  # says what to do
    assert not (tmp_path / "app.db").exists()  # the database was never opened
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


def test_with_sign_in_configured_it_starts_on_every_interface(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(AUTH)
    proc, info, log = start_app(tmp_path, prepared=False, secrets=secrets, address="0.0.0.0")
    try:
        assert urllib.request.urlopen(f"{info.url}/_stcore/health", timeout=10).read() == b"ok"
        assert "refuses" not in info.log.read_text()
    finally:
        stop_app(proc, log)


@pytest.mark.parametrize("ip, refused", [(None, False), ("127.0.0.1", False), ("::1", False), ("10.0.0.7", True),
                                         ("2001:db8::1", True)])
def test_a_session_from_another_machine_is_refused_without_sign_in(ip, refused):
    """However the server was started (uvicorn directly, a forwarded port), local mode serves only this machine."""
    from core.access.signin import client_refusal

    text = client_refusal(ip, sign_in=False)
    assert (text is not None) == refused
    if refused:
        assert ip in text and "[auth]" in text
    assert client_refusal(ip, sign_in=True) is None
