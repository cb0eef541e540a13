"""Validate Kubernetes objects against the OpenAPI (JSON) schema of a pinned Kubernetes version.

Uses the schemas bundled with kubernetes-validate (a test dependency), with one
jsonschema validator per (apiVersion, kind) built once and reused: its own
``kubernetes_validate.validate`` re-reads the schema files on every call (~7.5 ms an
object), which would make validating a whole regional stack slow for no reason.
Strict schemas reject unknown fields, so a misspelled key fails here rather than in a
cluster.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

K8S_VERSION = "1.33"  # the Kubernetes minor the stacks are validated against


class SchemaValidator:
    def __init__(self, version: str = K8S_VERSION, strict: bool = True):
        try:
            import importlib_resources  # noqa: F401  (kubernetes-validate's own dependency)
            import kubernetes_validate  # noqa: F401
        except ImportError as exc:  # pragma: no cover - test extra missing
            raise RuntimeError("schema validation needs the test extra: pip install -e '.[test]' (kubernetes-validate)") from exc
        self.version = version
        self.schema_dir = f"v{version}.0-local" + ("-strict" if strict else "")
        self._validators: dict[tuple[str, str], Any] = {}
        self._registry = None

    def _files(self):
        import importlib_resources

        return importlib_resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", self.schema_dir)

    def _validator(self, api_version: str, kind: str):
        key = (api_version, kind)
        if key not in self._validators:
            import jsonschema
            from referencing import Registry, Resource

            files = self._files()
            if self._registry is None:
                definitions = json.loads(files.joinpath("_definitions.json").read_text())
                self._registry = Resource.from_contents(definitions) @ Registry()
            # rbac.authorization.k8s.io/v1 -> rbac-v1, apps/v1 -> apps-v1, v1 -> v1
            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            path = files.joinpath(f"{kind.lower()}-{api}.json")
            if not path.is_file():
                raise KeyError(f"no schema for {kind} {api_version} in Kubernetes {self.version}")
            schema = json.loads(path.read_text())
            registry = Resource.from_contents(schema) @ self._registry
            self._validators[key] = jsonschema.validators.Draft202012Validator(schema, registry=registry)
        return self._validators[key]

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Schema errors of one object, as ``path: message``; [] when valid."""
        validator = self._validator(obj["apiVersion"], obj["kind"])
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


@lru_cache(maxsize=4)
def validator(version: str = K8S_VERSION, strict: bool = True) -> SchemaValidator:
    return SchemaValidator(version, strict)
