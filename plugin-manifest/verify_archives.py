#!/usr/bin/env python3
"""Check every platform of krew.yaml against its release archive, as `krew install` would.

For each platform: the archive named by the uri is in the archives directory; its sha256 is the
manifest's; every `files[].from` is in it; `bin` is among what lands in the install directory,
executable outside Windows; and the binary is built for that platform (ELF, Mach-O or PE header,
with the matching machine type), so a mixed-up archive cannot ship.

usage: verify_archives.py --manifest krew.yaml --archives dist
Exits 1 listing every problem found.
"""
import argparse
import hashlib
import pathlib
import struct
import sys
import tarfile
import zipfile

# (container format, machine field value) per Krew platform.
EXPECTED = {
    ("linux", "amd64"): ("ELF", 0x3E),
    ("linux", "arm64"): ("ELF", 0xB7),
    ("darwin", "amd64"): ("Mach-O", 0x01000007),
    ("darwin", "arm64"): ("Mach-O", 0x0100000C),
    ("windows", "amd64"): ("PE", 0x8664),
    ("windows", "arm64"): ("PE", 0xAA64),
}


def binary_kind(head: bytes):
    """(format, machine) of an executable from its first bytes, or None."""
    if head[:4] == b"\x7fELF":
        endian = "<" if head[5] == 1 else ">"
        return "ELF", struct.unpack(endian + "H", head[18:20])[0]
    if head[:4] == b"\xcf\xfa\xed\xfe":  # MH_MAGIC_64, little-endian
        return "Mach-O", struct.unpack("<I", head[4:8])[0]
    if head[:2] == b"MZ":
        pe = struct.unpack("<I", head[0x3C:0x40])[0]
        if head[pe:pe + 4] == b"PE\0\0":
            return "PE", struct.unpack("<H", head[pe + 4:pe + 6])[0]
    return None


def members(path: pathlib.Path):
    """{name: (bytes, executable?)} of a .tar.gz or .zip."""
    out = {}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                out[info.filename] = (z.read(info), True)
    else:
        with tarfile.open(path, "r:gz") as t:
            for m in t.getmembers():
                if m.isfile():
                    out[m.name.removeprefix("./")] = (t.extractfile(m).read(), bool(m.mode & 0o111))
    return out


def check(platform: dict, archives: pathlib.Path) -> list:
    labels = platform["selector"]["matchLabels"]
    key = (labels["os"], labels["arch"])
    where = f"{key[0]}/{key[1]}"
    path = archives / platform["uri"].rsplit("/", 1)[-1]
    if not path.is_file():
        return [f"{where}: {path} is missing"]
    problems = []
    if hashlib.sha256(path.read_bytes()).hexdigest() != platform["sha256"]:
        problems.append(f"{where}: sha256 of {path.name} differs from the manifest")
    content = members(path)
    landed = {}
    for op in platform.get("files", []):
        if op["from"] not in content:
            problems.append(f"{where}: files.from {op['from']} is not in {path.name}")
        else:
            landed[op["from"]] = content[op["from"]]
    binary = landed.get(platform["bin"])
    if binary is None:
        return problems + [f"{where}: bin {platform['bin']} is not installed by files"]
    data, executable = binary
    if key[0] != "windows" and not executable:
        problems.append(f"{where}: {platform['bin']} is not executable")
    kind = binary_kind(data[:4096])
    if kind != EXPECTED[key]:
        problems.append(f"{where}: {platform['bin']} is {kind}, want {EXPECTED[key]}")
    return problems


def parse_manifest(text: str) -> list:
    """The platforms of krew.yaml as render_krew.py writes it (no YAML library needed)."""
    platforms, current, files = [], None, None
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("  - selector:"):
            current = {"selector": {"matchLabels": {}}, "files": []}
            platforms.append(current)
        elif current is None:
            continue
        elif line.startswith(("os:", "arch:")):
            k, v = line.split(":", 1)
            current["selector"]["matchLabels"][k] = v.strip()
        elif line.startswith(("uri:", "sha256:", "bin:")):
            k, v = line.split(":", 1)
            current[k] = v.strip()
        elif line.startswith("- from:"):
            files = {"from": line.split(":", 1)[1].strip()}
            current["files"].append(files)
    return platforms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=pathlib.Path, required=True)
    p.add_argument("--archives", type=pathlib.Path, required=True)
    a = p.parse_args()
    platforms = parse_manifest(a.manifest.read_text())
    problems = [] if platforms else ["no platforms in the manifest"]
    for platform in platforms:
        problems += check(platform, a.archives)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    for platform in platforms:
        labels = platform["selector"]["matchLabels"]
        print(f"ok {labels['os']}/{labels['arch']}: {platform['uri'].rsplit('/', 1)[-1]}")


if __name__ == "__main__":
    main()
