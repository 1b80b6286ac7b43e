"""`python -m core members add|list|remove` and acting as a member on the command line (``--as``)."""

from __future__ import annotations


from core.__main__ import main
from core.access import audit_frame
from core.store.db import make_engine



def test_members_commands_and_as_a_viewer(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["members", "add", "--workspace", "acme", "--email", "Ann@Acme.example", "--role", "admin",
                 "--create", "--db", db]) == 0
    assert main(["members", "add", "--workspace", "acme", "--email", "vic@acme.example", "--role", "viewer", "--db", db]) == 0
    assert main(["members", "list", "--workspace", "acme", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "created workspace 'acme'" in out and "ann@acme.example" in out and "viewer" in out

    assert main(["members", "add", "--workspace", "acme", "--email", "x@acme.example", "--role", "owner", "--db", db]) == 2
    assert "unknown role 'owner'" in capsys.readouterr().err
    assert main(["members", "add", "--workspace", "nope", "--email", "x@acme.example", "--role", "viewer", "--db", db]) == 2
    assert "does not exist" in capsys.readouterr().err

    # a viewer can change nothing from the command line either; the refusal names the role and is logged
    assert main(["--as", "vic@acme.example", "members", "add", "--workspace", "acme", "--email", "eve@acme.example",
                 "--role", "admin", "--db", db]) == 2
    assert "needs the admin role" in capsys.readouterr().err
    assert main(["--as", "ann@acme.example", "members", "remove", "--workspace", "acme", "--email", "vic@acme.example",
                 "--db", db]) == 0
    assert main(["members", "remove", "--workspace", "acme", "--email", "ann@acme.example", "--db", db]) == 2
    assert "last admin" in capsys.readouterr().err
    main(["members", "list", "--db", db])  # resets --as for the rest of the process

    eng = make_engine(db)
    try:
        log = audit_frame(eng, "acme")
    finally:
        eng.dispose()
    refused = log[log["outcome"] == "refused"].iloc[0]
    assert (refused["email"], refused["entry_point"], refused["action"]) == ("vic@acme.example", "cli", "member.add")
    removed = log[log["action"] == "member.remove"].iloc[0]
    assert (removed["email"], removed["outcome"]) == ("ann@acme.example", "ok")
