"""``flowdeck migrate``: bring the database to the latest schema (run as the owner role).

Reads ``FLOWDECK_DATABASE_ADMIN_URL`` (the owner of the tables; falls back to
``FLOWDECK_DATABASE_URL``) and names the application role the migrations grant to
(``--app-role``, ``FLOWDECK_APP_ROLE``, default ``flowdeck_app``) and the system role, the only
one that may call the cross-tenant scans (``--system-role``, ``FLOWDECK_SYSTEM_ROLE``, default
``flowdeck_system``: the worker's and scheduler's log-in role must be its member). The migrations are found through
``--config`` (default: ``FLOWDECK_ALEMBIC_CONFIG``, else ``alembic.ini`` in the working directory,
else the repository's). Safe to run on every deploy: an up-to-date database is left as it is.
"""

from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowdeck_runtime.settings import get_settings

if TYPE_CHECKING:
    import argparse

_REPOSITORY = Path(__file__).resolve().parents[4]


def _config_path(given: str | None) -> Path:
    for candidate in (given, os.environ.get("FLOWDECK_ALEMBIC_CONFIG"), "alembic.ini", _REPOSITORY / "alembic.ini"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise SystemExit("flowdeck migrate: no alembic.ini found (pass --config or set FLOWDECK_ALEMBIC_CONFIG)")


def migrate(
    url: str,
    *,
    app_role: str,
    system_role: str = "flowdeck_system",
    revision: str = "head",
    config_path: str | None = None,
) -> None:
    """Upgrade the database at ``url`` to ``revision``, granting to ``app_role`` (and the
    cross-tenant scans to ``system_role``, the worker's and scheduler's)."""
    from alembic import command
    from alembic.config import Config

    path = _config_path(config_path)
    config = Config(str(path))
    config.set_main_option("script_location", str(path.parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.cmd_opts = Namespace(x=[f"app_role={app_role}", f"system_role={system_role}"])
    command.upgrade(config, revision)


@dataclass(frozen=True)
class _MigrateCommand:
    help: str = "Migrate the database to the latest schema (as the owner role)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--revision", default="head", help="target revision (default: head)")
        parser.add_argument("--app-role", default=os.environ.get("FLOWDECK_APP_ROLE", "flowdeck_app"))
        parser.add_argument("--system-role", default=os.environ.get("FLOWDECK_SYSTEM_ROLE", "flowdeck_system"))
        parser.add_argument("--config", default=None, help="alembic.ini to use")

    def run(self, args: argparse.Namespace) -> int:
        settings = get_settings()
        migrate(
            settings.database.admin_url,
            app_role=args.app_role,
            system_role=args.system_role,
            revision=args.revision,
            config_path=args.config,
        )
        print(f"flowdeck migrate: the database is at {args.revision}")
        return 0


MIGRATE = _MigrateCommand()

__all__ = ["MIGRATE", "migrate"]
