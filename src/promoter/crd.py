"""The ModelPromotion CustomResourceDefinition, generated from the pydantic spec.

The pydantic models in `promoter.promotion.spec` are the one source of truth; this module turns their JSON
schema into a Kubernetes *structural* schema (no $ref, no anyOf over types, `nullable` instead of a
null type, OpenAPI v3 exclusive bounds) and adds what JSON schema cannot say as CEL rules (exactly
one source). The committed `charts/promoter/crds/modelpromotion.yaml` is this module's output; a test
fails when the two differ, so the CRD cannot drift from the model:

    python -m promoter.crd > charts/promoter/crds/modelpromotion.yaml
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from promoter.promotion.spec import API_VERSION, KIND, PROMOTION_NAME_MAX, PromotionSpec

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "modelpromotions"

# A gate is a number (a floor) or {min, enforce}. A structural schema cannot say "number or object",
# and CEL cannot type such values (the API server refuses the rule), so they are kept as given and
# their shape is checked by the operator with the same pydantic model. Known gap, see the tests.
_THRESHOLD_VALUE = {
    "x-kubernetes-preserve-unknown-fields": True,
    "description": "a number (the floor) or {min: N, enforce: bool}; checked by the operator",
}
_EXACTLY_ONE_SOURCE = {
    "rule": "has(self.train) != has(self.modelVersion)",
    "message": "exactly one of 'train' or 'modelVersion' must be set",
}
# The schema covers spec only; a root rule may read metadata.name, whose limit comes from the names
# derived from it (see PROMOTION_NAME_MAX).
_NAME_FITS_DERIVED_NAMES = {
    "rule": f"self.metadata.name.size() <= {PROMOTION_NAME_MAX}",
    "message": f"metadata.name: at most {PROMOTION_NAME_MAX} characters, so that every name derived "
    "from it (its Workflow, its load-test Jobs, their labels) fits",
}
_DROPPED = {"title", "additionalProperties", "$defs"}


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        resolved = dict(defs[node["$ref"].split("/")[-1]])
        resolved.update({k: v for k, v in node.items() if k != "$ref"})
        return _structural(resolved, defs)
    variants = node.get("anyOf")
    if variants is not None:
        kept = [v for v in variants if v.get("type") != "null"]
        if len(kept) != 1:
            raise ValueError(f"cannot express a union of {len(kept)} types structurally: {variants}")
        merged = {k: v for k, v in node.items() if k != "anyOf"} | kept[0]
        merged.pop("default", None)  # a null default is "absent" in Kubernetes
        return _structural(merged, defs) | {"nullable": True}

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and isinstance(value, dict | list)):
            continue
        if key == "properties":
            out[key] = {name: _structural(child, defs) for name, child in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if extra.get("$ref", "").endswith("/Threshold"):
            out["additionalProperties"] = dict(_THRESHOLD_VALUE)
            out["maxProperties"] = 256
        elif extra:
            out["additionalProperties"] = _structural(extra, defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True  # free-form, e.g. pipeline params
    elif extra is True:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def spec_schema() -> dict[str, Any]:
    schema = PromotionSpec.model_json_schema(by_alias=True, mode="validation")
    structural = _structural(schema, schema.get("$defs", {}))
    structural["properties"]["source"]["x-kubernetes-validations"] = [dict(_EXACTLY_ONE_SOURCE)]
    return structural


def crd() -> dict[str, Any]:
    def column(name: str, path: str, kind: str = "string") -> dict[str, str]:
        return {"name": name, "type": kind, "jsonPath": path}

    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "plural": PLURAL, "singular": "modelpromotion", "shortNames": ["mp"]},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        column("Phase", ".status.phase"),
                        column("Model", ".spec.model"),
                        column("Candidate", ".status.modelVersion"),
                        column("Reason", ".status.reason"),
                        column("Age", ".metadata.creationTimestamp", "date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "x-kubernetes-validations": [dict(_NAME_FITS_DERIVED_NAMES)],
                            "properties": {
                                "spec": spec_schema(),
                                # written only by the operator (status subresource): promotion.status
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """PyYAML's own safe dumper, whatever was imported before: Hera (hera/_yaml.py) replaces the
    str representer of every PyYAML dumper on import, dumping multi-line strings (descriptions from
    docstrings) as `|` blocks, so the same CRD rendered in two processes would differ."""


_Dumper.add_representer(str, yaml.representer.SafeRepresenter.represent_str)


def render() -> str:
    header = "# Generated by `python -m promoter.crd` from promoter.promotion.spec: do not edit by hand.\n"
    return header + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
