#!/usr/bin/env python3
"""Applies an admission webhook's answer to a pod and validates the result.

Usage: validate_pod.py REVIEW_REQUEST.json REVIEW_RESPONSE.json [KUBERNETES_VERSION]

Reads the pod from the request's `request.object`, applies the JSON Patch (RFC 6902
`add` operations, base64 in `response.patch`) when the response has one, validates the
patched pod against the Kubernetes OpenAPI schema of that version (default 1.30) with
kubernetes-validate in strict mode (unknown fields are errors), and prints the patched
pod as JSON. Exits 1 with the validation errors when the pod is invalid.
"""

import base64
import json
import sys

import kubernetes_validate


def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def add(doc, path, value):
    parts = pointer(path)
    target = doc
    for p in parts[:-1]:
        target = target[int(p)] if isinstance(target, list) else target[p]
    last = parts[-1]
    if isinstance(target, list):
        if last == "-":
            target.append(value)
        else:
            target.insert(int(last), value)
    else:
        target[last] = value


def main():
    request = json.load(open(sys.argv[1]))
    response = json.load(open(sys.argv[2]))["response"]
    version = sys.argv[3] if len(sys.argv) > 3 else "1.30"
    pod = request["request"]["object"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch", response
        for op in json.loads(base64.b64decode(response["patch"])):
            assert op["op"] == "add", op
            add(pod, op["path"], op["value"])
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        print(f"invalid pod: {e.message} at {list(e.path)}", file=sys.stderr)
        sys.exit(1)
    json.dump(pod, sys.stdout)


if __name__ == "__main__":
    main()
