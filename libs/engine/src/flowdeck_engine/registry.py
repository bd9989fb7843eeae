"""The registry of workflow definitions, by name and semantic version."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from flowdeck_engine.definition import WorkflowDefinition
from flowdeck_engine.exceptions import DuplicateDefinitionError, ValidationError, WorkflowNotFoundError
from flowdeck_engine.kernel import Kernel

if TYPE_CHECKING:
    from flowdeck_engine.policies import EngineLimits

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version (``1.10.0`` after ``1.9.0``, ``2.0.0-rc.1`` before ``2.0.0``).

    Raises :class:`ValidationError` when ``version`` is not a semantic version.
    """
    match = _SEMVER.match(version)
    if match is None:
        raise ValidationError(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = match.groups()
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, parts


class WorkflowClass(Protocol):
    """A class that describes a workflow: it has a ``get_definition`` class method."""

    @classmethod
    def get_definition(cls) -> WorkflowDefinition:
        """The class's workflow definition."""
        ...


class WorkflowRegistry:
    """Registered workflow definitions. A name and version, once registered, never changes."""

    def __init__(self, limits: EngineLimits | None = None) -> None:
        self._limits = limits
        self._versions: dict[str, dict[str, WorkflowDefinition]] = {}
        self._inactive: set[tuple[str, str]] = set()
        self._latest: dict[str, WorkflowDefinition] = {}
        self._kernels: dict[WorkflowDefinition, Kernel] = {}  # definitions hash by identity
        self._classes: dict[str, type[Any]] = {}

    def register_definition(self, definition: WorkflowDefinition) -> None:
        """Validate and register ``definition``.

        Raises :class:`ValidationError` listing every problem of an invalid definition, and
        :class:`DuplicateDefinitionError` when another definition has the same name and version.
        """
        version_key(definition.version)
        versions = self._versions.get(definition.name, {})
        existing = versions.get(definition.version)
        if existing is definition:
            return
        if existing is not None:
            raise DuplicateDefinitionError(definition.name, definition.version)
        kernel = Kernel(definition, self._limits)
        self._versions.setdefault(definition.name, {})[definition.version] = definition
        self._kernels[definition] = kernel
        self._refresh_latest(definition.name)

    def register_workflow_class(self, workflow_class: type[Any]) -> None:
        """Register a workflow class (one with a ``get_definition`` class method) and its definition."""
        definition = workflow_class.get_definition()
        self.register_definition(definition)
        self._classes[definition.name] = workflow_class

    def get_workflow_class(self, name: str) -> type[Any]:
        """The workflow class registered under ``name``."""
        try:
            return self._classes[name]
        except KeyError:
            raise WorkflowNotFoundError(name) from None

    def get_definition(self, name: str, version: str | None = None) -> WorkflowDefinition:
        """The definition ``name`` at ``version``, or when None its latest active version (the
        highest release by semantic version; a pre-release only when there is no release)."""
        if version is None:
            latest = self._latest.get(name)
            if latest is None:
                raise WorkflowNotFoundError(name)
            return latest
        definition = self._versions.get(name, {}).get(version)
        if definition is None:
            raise WorkflowNotFoundError(name, version)
        return definition

    def has_definition(self, name: str, version: str | None = None) -> bool:
        """Whether ``name`` (at ``version``, or any active version) is registered."""
        return name in self._latest if version is None else version in self._versions.get(name, {})

    def list_definitions(self, active_only: bool = True) -> list[WorkflowDefinition]:
        """Every registered definition (every version), oldest version first within a name."""
        return [
            definition
            for name in sorted(self._versions)
            for version, definition in sorted(self._versions[name].items(), key=lambda kv: version_key(kv[0]))
            if not (active_only and (name, version) in self._inactive)
        ]

    def is_active(self, name: str, version: str) -> bool:
        """Whether new instances may start on ``name`` at ``version``."""
        return version in self._versions.get(name, {}) and (name, version) not in self._inactive

    def deactivate(self, name: str, version: str) -> None:
        """Stop new instances from starting on this version; running ones finish on it."""
        self.get_definition(name, version)
        self._inactive.add((name, version))
        self._refresh_latest(name)

    def activate(self, name: str, version: str) -> None:
        """Allow new instances on this version again."""
        self.get_definition(name, version)
        self._inactive.discard((name, version))
        self._refresh_latest(name)

    def kernel(self, definition: WorkflowDefinition) -> Kernel:
        """The compiled kernel of a registered definition."""
        kernel = self._kernels.get(definition)
        if kernel is None:
            raise WorkflowNotFoundError(definition.name, definition.version)
        return kernel

    def resolve(self, workflow: str | WorkflowDefinition | type[Any], version: str | None = None) -> WorkflowDefinition:
        """The definition to start for a name, a definition, or a workflow class.

        Only active versions may be started; naming an inactive version explicitly is an error.
        """
        if isinstance(workflow, WorkflowDefinition):
            name, version = workflow.name, version or workflow.version
        elif isinstance(workflow, str):
            name = workflow
        else:
            name = workflow.get_definition().name
        definition = self.get_definition(name, version)
        if version is not None and (name, version) in self._inactive:
            raise WorkflowNotFoundError(name, version)
        return definition

    def _refresh_latest(self, name: str) -> None:
        active = [v for v in self._versions.get(name, {}) if (name, v) not in self._inactive]
        stable = [v for v in active if version_key(v)[3]]
        active = stable or active  # a pre-release is the latest only while no release exists
        if active:
            self._latest[name] = self._versions[name][max(active, key=version_key)]
        else:
            self._latest.pop(name, None)
