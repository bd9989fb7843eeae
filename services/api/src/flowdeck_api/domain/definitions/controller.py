"""Definition routes: upload, list, versions, one version's document, activation, graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery

from flowdeck_api.domain.definitions.schemas import DefinitionRead, DefinitionSummary, DefinitionVersions, GraphRead
from flowdeck_api.domain.definitions.service import DefinitionService
from flowdeck_api.errors import ApiError, responses
from flowdeck_api.security import ADMIN, principal_of

if TYPE_CHECKING:
    from flowdeck_engine.documents import Syntax

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
MAX_DEFINITION_BYTES = 262_144


def provide_definitions(request: Request[Any, Any, Any]) -> DefinitionService:
    """The calling tenant's definitions."""
    return DefinitionService(request.app.state.tenants, principal_of(request).tenant_id)


def _syntax(request: Request[Any, Any, Any]) -> Syntax:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media in YAML_TYPES:
        return "yaml"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    raise ApiError(415, "unsupported_media_type", "send the document as application/json or application/yaml")


class DefinitionController(Controller):
    """A tenant's workflow definitions. Reading is open to every role; changing them is for admins."""

    path = "/definitions"
    tags = ["definitions"]
    dependencies = {"definitions": Provide(provide_definitions, sync_to_thread=False)}

    @post(
        "/",
        responses=responses(400, 403, 409, 413, 415, 422),
        guards=[ADMIN],
        status_code=201,
        request_max_body_size=MAX_DEFINITION_BYTES,
        opt={"raw_body": True},
        summary="Upload a workflow document (JSON or YAML) as a new version",
        description="The body is a workflow document (see workflow-document.schema.json). Every problem "
        "is reported at once (422, `errors` with a code and a JSON pointer each); nothing is stored "
        "unless the document is valid. A name and version, once stored, never change (409).",
    )
    async def upload(
        self, request: Request[Any, Any, Any], definitions: NamedDependency[DefinitionService]
    ) -> DefinitionRead:
        """Validate and store a new definition version."""
        return await definitions.upload(await request.body(), _syntax(request))

    @get("/", responses=responses(400), summary="The latest version of every workflow")
    async def list_latest(
        self, definitions: NamedDependency[DefinitionService], active_only: FromQuery[bool] = True
    ) -> list[DefinitionSummary]:
        """Latest versions (active ones only, unless ``active_only=false``)."""
        return await definitions.latest(active_only=active_only)

    @get("/{name:str}", responses=responses(404), summary="Every version of a workflow")
    async def versions(
        self, name: FromPath[str], definitions: NamedDependency[DefinitionService]
    ) -> DefinitionVersions:
        """Every version, oldest first."""
        return await definitions.versions(name)

    @get("/{name:str}/{version:str}", responses=responses(404), summary="One version with its document")
    async def get_version(
        self, name: FromPath[str], version: FromPath[str], definitions: NamedDependency[DefinitionService]
    ) -> DefinitionRead:
        """One version's document."""
        return await definitions.get(name, version)

    @post("/{name:str}/{version:str}/activate", responses=responses(403, 404), guards=[ADMIN], status_code=200)
    async def activate(
        self, name: FromPath[str], version: FromPath[str], definitions: NamedDependency[DefinitionService]
    ) -> DefinitionSummary:
        """Allow new instances on this version."""
        return await definitions.set_active(name, version, True)

    @post("/{name:str}/{version:str}/deactivate", responses=responses(403, 404), guards=[ADMIN], status_code=200)
    async def deactivate(
        self, name: FromPath[str], version: FromPath[str], definitions: NamedDependency[DefinitionService]
    ) -> DefinitionSummary:
        """Stop new instances on this version; running ones finish on it."""
        return await definitions.set_active(name, version, False)

    @get("/{name:str}/{version:str}/graph", responses=responses(404), summary="The graph as Mermaid text and JSON")
    async def graph(
        self, name: FromPath[str], version: FromPath[str], definitions: NamedDependency[DefinitionService]
    ) -> GraphRead:
        """The version's graph."""
        return await definitions.graph(name, version)
