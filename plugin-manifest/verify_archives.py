#!/usr/bin/env python3
"""Check every platform of krew.yaml against its release archive, as `krew install` would.

For each platform: the archive named by the uri is in the archives directory; its sha256 is the
manifest's; every `files[].from` is in it; `bin` is among what lands in the install directory,
executable outside Windows; and the binary is built for that platform (ELF, Mach-O or PE header,
with the matching machine type), so a mixed-up archive cannot ship.

A macOS (Mach-O) binary is also checked for what can be seen without a Mac: every library it
loads (LC_LOAD_DYLIB and its weak/re-export/upward kin) is a /usr/lib system library (libSystem,
libiconv, libresolv, libc++ ...) that every Mac has, never a /System/Library/Frameworks framework
or an @rpath one; it runs on the macOS versions Rust supports for it (11.0 on arm64, 10.12 on
amd64: LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX); and it carries a code signature (LC_CODE_SIGNATURE: an embedded signature
whose CodeDirectory hashes match the binary's pages), since Apple Silicon refuses to run
unsigned arm64 code. Nothing here runs the binary.

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


LC_LOAD_DYLIB = 0xC
LC_LOAD_WEAK_DYLIB = 0x80000018
LC_REEXPORT_DYLIB = 0x8000001F
LC_LAZY_LOAD_DYLIB = 0x20
LC_LOAD_UPWARD_DYLIB = 0x80000023
DYLIB_COMMANDS = {LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB,
                  LC_LOAD_UPWARD_DYLIB}
LC_CODE_SIGNATURE = 0x1D
LC_VERSION_MIN_MACOSX = 0x24
LC_BUILD_VERSION = 0x32
# The oldest macOS each binary must run on: Rust's own minimum for the target (11.0 is also the
# first macOS on Apple Silicon). zig defaults to a recent release, so a build that forgets
# MACOSX_DEPLOYMENT_TARGET would shut out every older Mac.
OLDEST_MACOS = {0x01000007: (10, 12), 0x0100000C: (11, 0)}
CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSSLOT_CODEDIRECTORY = 0
CSSLOT_ALTERNATE_CODEDIRECTORIES = range(0x1000, 0x1005)
CS_HASHES = {1: hashlib.sha1, 2: hashlib.sha256}  # CS_HASHTYPE_SHA1, CS_HASHTYPE_SHA256


def macho_load_commands(data: bytes):
    """The (cmd, bytes) load commands of a 64-bit little-endian Mach-O, or a problem string."""
    ncmds, sizeofcmds = struct.unpack("<II", data[16:24])
    end = 32 + sizeofcmds
    if end > len(data):
        return "has load commands running past the end of the file"
    commands, off = [], 32
    for _ in range(ncmds):
        if off + 8 > end:
            return "has truncated load commands"
        cmd, size = struct.unpack("<II", data[off:off + 8])
        if size < 8 or off + size > end:
            return "has truncated load commands"
        commands.append((cmd, data[off:off + size]))
        off += size
    return commands


def code_signature_problem(data: bytes, dataoff: int, datasize: int):
    """Why the embedded signature at dataoff does not sign this binary, or None."""
    blob = data[dataoff:dataoff + datasize]
    if dataoff + datasize > len(data) or len(blob) < 12:
        return "has a code signature lying outside the file"
    magic, _, count = struct.unpack(">III", blob[:12])
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        return f"has a code signature that is not an embedded signature (magic {magic:#x})"
    directories = 0
    for i in range(count):
        slot, offset = struct.unpack(">II", blob[12 + 8 * i:20 + 8 * i])
        if slot != CSSLOT_CODEDIRECTORY and slot not in CSSLOT_ALTERNATE_CODEDIRECTORIES:
            continue
        cd = blob[offset:]
        if len(cd) < 44 or struct.unpack(">I", cd[:4])[0] != CSMAGIC_CODEDIRECTORY:
            return "has a code signature with a malformed CodeDirectory"
        hash_offset, _, _, n_code, code_limit = struct.unpack(">IIIII", cd[16:36])
        hash_size, hash_type, _, page_shift = cd[36], cd[37], cd[38], cd[39]
        if hash_type not in CS_HASHES:
            return f"has a CodeDirectory with unknown hash type {hash_type}"
        if code_limit != dataoff:
            return f"has a CodeDirectory covering {code_limit} bytes, not the {dataoff} before the signature"
        page = 1 << page_shift if page_shift else code_limit
        if n_code != (code_limit + page - 1) // page:
            return "has a CodeDirectory with the wrong number of page hashes"
        for n in range(n_code):
            want = cd[hash_offset + n * hash_size:hash_offset + (n + 1) * hash_size]
            got = CS_HASHES[hash_type](data[n * page:min((n + 1) * page, code_limit)]).digest()
            if got[:hash_size] != want:
                return f"has a code signature that does not match page {n} (changed after signing?)"
        directories += 1
    if directories == 0:
        return "has a code signature without a CodeDirectory"
    return None


def macho_problems(data: bytes) -> list:
    """What would keep a Mach-O binary from running on a stock Mac, as far as can be seen here."""
    commands = macho_load_commands(data)
    if isinstance(commands, str):
        return [commands]
    problems, signature = [], None
    for cmd, body in commands:
        if cmd in DYLIB_COMMANDS:
            name_offset = struct.unpack("<I", body[8:12])[0]
            name = body[name_offset:].split(b"\0", 1)[0].decode(errors="replace")
            if not name.startswith("/usr/lib/"):
                problems.append(f"links {name}, not a /usr/lib system library (no frameworks: "
                                "they need Apple's SDK to link)")
        elif cmd == LC_CODE_SIGNATURE:
            signature = struct.unpack("<II", body[8:16])
        elif cmd in (LC_BUILD_VERSION, LC_VERSION_MIN_MACOSX):
            # minos: the platform first in LC_BUILD_VERSION, the version first in the other.
            minos = struct.unpack("<I", body[12:16] if cmd == LC_BUILD_VERSION else body[8:12])[0]
            version = (minos >> 16, (minos >> 8) & 0xFF)
            oldest = OLDEST_MACOS.get(struct.unpack("<I", data[4:8])[0])
            if oldest and version > oldest:
                problems.append(f"needs macOS {version[0]}.{version[1]}, want {oldest[0]}.{oldest[1]} "
                                "(set MACOSX_DEPLOYMENT_TARGET)")
    if signature is None:
        problems.append("has no code signature (LC_CODE_SIGNATURE): sign it with rcodesign "
                        "(Apple Silicon refuses unsigned arm64 code)")
    else:
        problem = code_signature_problem(data, *signature)
        if problem:
            problems.append(problem)
    return problems


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
    elif kind[0] == "Mach-O":
        problems += [f"{where}: {platform['bin']} {p}" for p in macho_problems(data)]
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
