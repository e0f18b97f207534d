#!/usr/bin/env python3
"""Validates custom resources against their CustomResourceDefinitions' schemas.

Usage: validate_cr.py CRDS.json CR.json [CR.json ...]

CRDS.json holds a JSON list of CustomResourceDefinition objects. Each resource is
checked against the openAPIV3Schema of its kind and version, strictly: an object
schema with properties and without x-kubernetes-preserve-unknown-fields accepts no
other fields (the API server would prune them silently; here they are errors, so a
misspelt field is caught). Prints "N valid" and exits 0, or every error and exits 1.
"""

import copy
import json
import sys

import jsonschema


def strict(schema):
    """The schema with unknown fields refused where Kubernetes would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.get("properties", {}).values():
            walk(value)
        walk(node.get("items"))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    # The API server checks these itself.
    for field in ("apiVersion", "kind", "metadata"):
        schema.setdefault("properties", {}).setdefault(field, {})
    return schema


def main():
    crds = json.load(open(sys.argv[1]))
    schemas = {}
    for crd in crds:
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            key = (f"{group}/{version['name']}", kind)
            schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    failed = 0
    files = sys.argv[2:]
    for path in files:
        obj = json.load(open(path))
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({path})"
        schema = schemas.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            print(f"{name}: no CRD defines it", file=sys.stderr)
            failed += 1
            continue
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(obj))
        for e in errors:
            print(f"{name}: {e.message} at {list(e.path)}", file=sys.stderr)
        failed += bool(errors)
    if failed:
        sys.exit(1)
    print(f"{len(files)} valid")


if __name__ == "__main__":
    main()
