"""`python -m core keys create|list|revoke` and `dispatch`: the key printed once, stored hashed, revocable."""

from __future__ import annotations

from sqlalchemy import select

from core.__main__ import main
from core.store.db import make_engine, transaction
from core.store.models import TrackingKey
from core.tracking import keys


def test_keys_cli_create_list_revoke(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["keys", "create", "--workspace", "shop", "--name", "backend", "--db", url]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("ms_sk_")
    engine = make_engine(url)
    with transaction(engine, "shop") as s:
        row = s.scalar(select(TrackingKey))
        assert row.key_hash == keys.digest(key) and key not in (row.prefix, row.name)  # only the hash is stored
    assert keys.lookup(engine, key).workspace_id == "shop"
    assert main(["keys", "create", "--workspace", "shop", "--origin", "https://Shop.Example.com/", "--db", url]) == 0
    assert "origins: https://shop.example.com" in capsys.readouterr().out
    assert main(["keys", "list", "--workspace", "shop", "--db", url]) == 0
    listing = capsys.readouterr().out
    assert "backend" in listing and "browser" in listing and key not in listing
    assert main(["keys", "revoke", str(row.id), "--workspace", "shop", "--db", url]) == 0
    assert keys.lookup(engine, key).revoked
    assert main(["keys", "revoke", "999", "--workspace", "shop", "--db", url]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["keys", "revoke", str(row.id), "--workspace", "other", "--db", url]) == 2  # not another workspace's key
    assert main(["keys", "create", "--workspace", "shop", "--origin", "not a url", "--db", url]) == 2
    assert main(["dispatch", "--db", url]) == 0
    assert "nothing due" in capsys.readouterr().out
