#!/usr/bin/env python3
"""Regenerates the collation data behind the unicode_loose vindexes.

Vitess's unicode_loose_md5 and unicode_loose_xxhash hash the primary weights of the root
("und") collation of golang.org/x/text/collate (CLDR 23, Unicode 6.2). Those weights are
data, not an algorithm, so Shardcar ships them as little-endian binary arrays under
filter/src/vindex/unicode_loose/data/, read with include_bytes!.

Source: Debian's golang-golang-x-text-dev package (BSD-3-Clause, Copyright The Go
Authors), file golang.org/x/text/collate/tables.go. The script downloads the package
with `apt-get download` when no path is given:

    scripts/gen-unicode-loose-tables.py [path/to/tables.go]

Only the five shared arrays are written; the root table starts at lookup block 0x15 and
value block 0 (x/text's `locales[0]`), which the Rust side hard-codes and this script
checks.
"""

import pathlib
import re
import struct
import subprocess
import sys
import tempfile

OUT = pathlib.Path(__file__).resolve().parent.parent / "filter/src/vindex/unicode_loose/data"

# name in tables.go -> (output file, struct format of one element, elements per entry)
ARRAYS = {
    "mainExpandElem": ("expand.bin", "<I", 1),
    "mainContractElem": ("contract.bin", "<I", 1),
    "mainValues": ("values.bin", "<I", 1),
    "mainLookup": ("lookup.bin", "<H", 1),
    "mainCTEntries": ("ct_entries.bin", "<BBBB", 4),
}

NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|\d+")


def find_tables_go() -> pathlib.Path:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="shardcar-xtext-"))
    subprocess.run(["apt-get", "download", "golang-golang-x-text-dev"], cwd=tmp, check=True)
    deb = next(tmp.glob("golang-golang-x-text-dev_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
    return next((tmp / "root").rglob("golang.org/x/text/collate/tables.go"))


def array_body(source: str, name: str) -> tuple[int, str]:
    match = re.search(r"^var %s = \[(\d+)\][^\n]*\{\n(.*?)^\}" % name, source, re.M | re.S)
    if not match:
        sys.exit(f"{name} not found in tables.go")
    return int(match.group(1)), match.group(2)


def parse(name: str, source: str, per_entry: int) -> list[int]:
    length, body = array_body(source, name)
    values = [0] * (length * per_entry)
    position = 0
    for line in body.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if per_entry > 1:
            # struct entries: {L, H, N, I},
            for entry in re.findall(r"\{([^}]*)\}", line):
                fields = [int(n, 0) for n in NUMBER.findall(entry)]
                assert len(fields) == per_entry, (name, entry)
                values[position : position + per_entry] = fields
                position += per_entry
            continue
        for item in filter(None, (part.strip() for part in line.split(","))):
            if ":" in item:
                # keyed element: 0xIDX: 0xVALUE
                index, value = (int(part.strip(), 0) for part in item.split(":"))
                position = index
            else:
                value = int(item, 0)
            values[position] = value
            position += 1
    return values


def main() -> None:
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else find_tables_go()
    source = path.read_text()
    root = re.search(r"\{ // und\s*lookupOffset: (0x[0-9a-f]+),\s*valuesOffset: (0x[0-9a-f]+),", source)
    if not root or (int(root.group(1), 16), int(root.group(2), 16)) != (0x15, 0):
        sys.exit("the und table is not at lookup block 0x15, value block 0: update root.rs")
    if 'UnicodeVersion = "6.2.0"' not in source or 'CLDRVersion = "23"' not in source:
        sys.exit("tables.go is not the CLDR 23 / Unicode 6.2 build Vitess uses")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (file, fmt, per_entry) in ARRAYS.items():
        values = parse(name, source, per_entry)
        element = struct.Struct("<" + fmt[1:2]) if per_entry > 1 else struct.Struct(fmt)
        data = b"".join(element.pack(v) for v in values)
        (OUT / file).write_bytes(data)
        print(f"{file}: {len(values) // per_entry} entries, {len(data)} bytes")


if __name__ == "__main__":
    main()
