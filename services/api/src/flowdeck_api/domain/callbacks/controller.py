"""The callback route: the token in the path is the only credential."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from flowdeck_api.domain.callbacks.service import CallbackService
from flowdeck_api.errors import responses


class CallbackAccepted(msgspec.Struct, kw_only=True):
    """The callback was delivered; the workflow goes on."""

    status: str = "accepted"


def provide_callbacks(request: Request[Any, Any, Any]) -> CallbackService:
    """The callback service."""
    return CallbackService(request.app.state.tenants, request.app.state.db_engine)


class CallbackController(Controller):
    """External systems resume waiting webhook steps. No bearer token: the callback token (random,
    single-use, tied to one instance and step) is the credential."""

    path = "/callbacks"
    tags = ["callbacks"]
    dependencies = {"callbacks": Provide(provide_callbacks, sync_to_thread=False)}

    @post(
        "/{token:str}",
        status_code=202,
        request_max_body_size=262_144,
        responses=responses(400, 404, 409, 413, 422),
        summary="Deliver a callback to a waiting webhook step",
        description="The JSON body is merged into the instance's context (at the step's result_key "
        "when it has one). The token works once; unknown, used and expired tokens all answer 404.",
    )
    async def deliver(
        self, token: FromPath[str], data: JSONBody[dict[str, Any]], callbacks: NamedDependency[CallbackService]
    ) -> CallbackAccepted:
        """Deliver the payload."""
        await callbacks.deliver(token, data)
        return CallbackAccepted()
