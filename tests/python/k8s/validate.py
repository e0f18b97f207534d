#!/usr/bin/env python3
"""Validates Kubernetes objects against the OpenAPI schema of one version, strictly.

Usage: validate.py VERSION FILE.json [FILE.json ...]

Each file holds one object (JSON). Unknown fields are errors (kubernetes-validate's
strict mode). Prints "N valid" and exits 0, or prints every invalid object's error and
exits 1.
"""

import json
import sys

import kubernetes_validate


def main():
    version, files = sys.argv[1], sys.argv[2:]
    failed = 0
    for path in files:
        obj = json.load(open(path))
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({path})"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            print(f"{name}: {e.message} at {list(e.path)}", file=sys.stderr)
            failed += 1
    if failed:
        sys.exit(1)
    print(f"{len(files)} valid")


if __name__ == "__main__":
    main()
