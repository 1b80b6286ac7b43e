"""Autogenerate an Alembic revision from the models: python scripts/make_migration.py "message"."""

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.store.db import upgrade_schema  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    engine = create_engine(f"sqlite:///{tmp}/m.db")
    upgrade_schema(engine)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parents[1] / "core/store/migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=sys.argv[1] if len(sys.argv) > 1 else "schema", autogenerate=True)
