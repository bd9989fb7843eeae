"""``flowdeck api``: serve the API with uvicorn, configured by the environment (``FLOWDECK_*``).

In production mode with ``FLOWDECK_REDIS_URL`` set, machine steps go to the workers and waits to
the scheduler; run ``flowdeck worker`` and ``flowdeck scheduler`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


@dataclass(frozen=True)
class _ApiCommand:
    help: str = "Serve the HTTP API (uvicorn)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    def run(self, args: argparse.Namespace) -> int:
        import uvicorn

        uvicorn.run(
            "flowdeck_api.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=False,
        )
        return 0


API = _ApiCommand()

__all__ = ["API"]
