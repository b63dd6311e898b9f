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

With --index DIR, the custom plugin index at DIR is checked as Krew reads it after
`kubectl krew index add NAME <git-url>` clones it: DIR/plugins/ holds one regular file per plugin
named <metadata.name>.yaml (Krew scans only regular *.yaml files directly in plugins/ and looks a
plugin up as plugins/<name>.yaml, so a .yml file, a symlink or a subdirectory is never found),
each a valid Plugin manifest (Krew's own validation: apiVersion, kind, a name that is safe and
equals the file's, a one-line shortDescription, a semantic version, per platform an os/arch
selector, uri, a 64-hex sha256, bin and files), and the index file is byte for byte the
manifest given (krew.yaml), so both install the same archives; with --archives too, the index's
platforms are checked against the archives like the manifest's.

usage: verify_archives.py --manifest krew.yaml [--archives dist] [--index .]
Exits 1 listing every problem found.
"""
import argparse
import hashlib
import pathlib
import re
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


class YamlError(ValueError):
    pass


def load_yaml(text: str):
    """The block-style YAML that Krew manifests are written in, with no YAML library: mappings,
    sequences (also at their key's indentation), literal block scalars (|) and plain or quoted
    scalars, which stay strings. Anything else is a YamlError naming the line."""
    lines = text.splitlines()
    pos = 0

    def fail(why, n=None):
        n = pos if n is None else n
        raise YamlError(f"line {n + 1}: {why}")

    def indent(line):
        return len(line) - len(line.lstrip(" "))

    def skip():
        nonlocal pos
        while pos < len(lines) and (not lines[pos].strip() or lines[pos].lstrip().startswith("#")):
            pos += 1

    def scalar(value):
        if value[:1] in "'\"":
            if len(value) < 2 or value[-1] != value[0]:
                fail(f"unterminated quoted scalar {value}")
            return value[1:-1]
        value = value.split(" #", 1)[0].strip()
        if value[:1] in "[{&*!%@`>":
            fail(f"unsupported YAML ({value[:1]}) in {value}")
        return value

    def literal(ind, header):
        nonlocal pos
        body = []
        while pos < len(lines) and (not lines[pos].strip() or indent(lines[pos]) > ind):
            body.append(lines[pos])
            pos += 1
        while body and not body[-1].strip():
            body.pop()
        if not body:
            return ""
        cut = min(indent(line) for line in body if line.strip())
        text = "\n".join(line[cut:] for line in body)
        return text if header == "|-" else text + "\n"

    def value_of(ind, value, in_mapping):
        if value in ("|", "|-"):
            return literal(ind, value)
        if value:
            return scalar(value)
        skip()
        if pos < len(lines):
            line = lines[pos]
            if indent(line) > ind:
                return node(indent(line))
            if in_mapping and indent(line) == ind and line[ind:].startswith("- "):
                return sequence(ind)
        return None

    def node(ind):
        if lines[pos][ind:].startswith("- "):
            return sequence(ind)
        return mapping(ind)

    def mapping(ind):
        nonlocal pos
        out = {}
        while True:
            skip()
            if pos >= len(lines) or indent(lines[pos]) < ind or lines[pos][ind:].startswith("- "):
                return out
            line = lines[pos]
            if "\t" in line[:indent(line) + 1]:
                fail("tab in indentation")
            if indent(line) > ind:
                fail("unexpected indentation")
            key, sep, rest = line[ind:].partition(":")
            if not sep or (rest and not rest.startswith(" ")) or not key.strip():
                fail(f"want key: value, got {line.strip()}")
            key = scalar(key.strip())
            if key in out:
                fail(f"duplicate key {key}")
            pos += 1
            out[key] = value_of(ind, rest.strip(), True)

    def sequence(ind):
        nonlocal pos
        out = []
        while True:
            skip()
            if pos >= len(lines) or indent(lines[pos]) != ind or not lines[pos][ind:].startswith("- "):
                return out
            item = lines[pos][ind + 2:]
            if re.match(r"[^\s'\"#-][^:]*:( |$)", item):
                # `- key: value`: a mapping whose first line starts after the dash.
                lines[pos] = " " * (ind + 2) + item
                out.append(mapping(ind + 2))
            else:
                pos += 1
                out.append(value_of(ind, item.strip(), False))

    skip()
    if pos >= len(lines):
        fail("empty document", 0)
    if indent(lines[pos]) != 0:
        fail("the document must start at column 0")
    doc = node(0)
    skip()
    if pos < len(lines):
        fail(f"unexpected {lines[pos].strip()}")
    return doc


def parse_manifest(text: str) -> list:
    """The platforms of a Plugin manifest (none when it has none)."""
    doc = load_yaml(text)
    spec = doc.get("spec") if isinstance(doc, dict) else None
    platforms = spec.get("platforms") if isinstance(spec, dict) else None
    return platforms if isinstance(platforms, list) else []


API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
SAFE_NAME = re.compile(r"^[\w-]+$")
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                    *(f"LPT{i}" for i in range(1, 10))}
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
SHA256 = re.compile(r"^[a-f0-9]{64}$")


def plugin_problems(doc, name: str) -> list:
    """Why Krew would refuse `doc` as the manifest of plugin `name` (its ValidatePlugin rules)."""
    if not isinstance(doc, dict):
        return ["is not a YAML mapping"]
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion is {doc.get('apiVersion')!r}, want {API_VERSION}")
    if doc.get("kind") != "Plugin":
        problems.append(f"kind is {doc.get('kind')!r}, want Plugin")
    if not SAFE_NAME.match(name) or name.upper() in WINDOWS_RESERVED:
        problems.append(f"plugin name {name!r} is not allowed (want {SAFE_NAME.pattern})")
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if metadata.get("name") != name:
        problems.append(f"metadata.name is {metadata.get('name')!r}, want {name!r}: Krew installs "
                        "INDEX/NAME from plugins/NAME.yaml, so a file is named metadata.name + .yaml")
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    short = spec.get("shortDescription")
    if not isinstance(short, str) or not short.strip():
        problems.append("spec.shortDescription is missing")
    elif "\n" in short or "\r" in short:
        problems.append("spec.shortDescription has a line break")
    if not SEMVER.match(str(spec.get("version") or "")):
        problems.append(f"spec.version {spec.get('version')!r} is not a semantic version like v1.2.3")
    platforms = spec.get("platforms")
    if not isinstance(platforms, list) or not platforms:
        return problems + ["spec.platforms is empty"]
    for i, p in enumerate(platforms):
        where = f"spec.platforms[{i}]"
        if not isinstance(p, dict):
            problems.append(f"{where} is not a mapping")
            continue
        for field in ("uri", "sha256", "bin"):
            if not isinstance(p.get(field), str) or not p[field]:
                problems.append(f"{where}.{field} is missing")
        if isinstance(p.get("sha256"), str) and p["sha256"] and not SHA256.match(p["sha256"]):
            problems.append(f"{where}.sha256 is not 64 lowercase hex digits")
        files = p.get("files")
        if files is not None and (not isinstance(files, list) or not files or not all(
                isinstance(f, dict) and f.get("from") and f.get("to") for f in files)):
            problems.append(f"{where}.files must be a non-empty list of from/to")
        selector = p.get("selector")
        labels = selector.get("matchLabels") if isinstance(selector, dict) else None
        if not isinstance(labels, dict) or not labels:
            problems.append(f"{where}.selector.matchLabels is missing")
        elif set(labels) - {"os", "arch"}:
            problems.append(f"{where}.selector has keys other than os and arch")
    return problems


def index_problems(index: pathlib.Path, manifest: pathlib.Path, text: str) -> list:
    """Why `kubectl krew index add` of a git repository laid out as `index` would not offer the
    plugin of `manifest` (whose content is `text`) as INDEX_NAME/<name>."""
    plugins = index / "plugins"
    if not plugins.is_dir():
        return [f"index: {plugins} is missing (Krew reads plugins/<name>.yaml at the root of the "
                "index repository): render it with render_krew.py --index"]
    try:
        name = load_yaml(text)["metadata"]["name"]
    except (YamlError, KeyError, TypeError):
        return [f"index: {manifest} names no plugin (metadata.name)"]
    problems, manifests = [], []
    for entry in sorted(plugins.iterdir()):
        rel = f"plugins/{entry.name}"
        if entry.is_symlink():
            problems.append(f"index: {rel} is a symlink; Krew's index scan takes regular files "
                            "only: commit a copy")
        elif entry.is_dir():
            problems.append(f"index: {rel}/ is a directory; Krew reads manifests directly in plugins/")
        elif entry.suffix == ".yml":
            problems.append(f"index: {rel} ends in .yml; Krew reads only .yaml files")
        elif entry.suffix == ".yaml":
            manifests.append(entry)
    want = plugins / f"{name}.yaml"
    if want not in manifests:
        problems.append(f"index: plugins/{name}.yaml is missing (Krew installs plugin {name} "
                        f"from that file)")
    for extra in manifests:
        if extra != want:
            problems.append(f"index: plugins/{extra.name} is another manifest; this index holds "
                            f"exactly one, plugins/{name}.yaml")
    for path in manifests:
        rel = f"plugins/{path.name}"
        body = path.read_text()
        try:
            doc = load_yaml(body)
        except YamlError as e:
            problems.append(f"index: {rel} is not YAML Krew can read: {e}")
            continue
        problems += [f"index: {rel}: {p}" for p in plugin_problems(doc, path.stem)]
        if path == want and body != text:
            differing = next((n for n, (a, b) in enumerate(
                zip(body.splitlines(), text.splitlines()), 1) if a != b),
                min(len(body.splitlines()), len(text.splitlines())) + 1)
            problems.append(f"index: {rel} differs from {manifest.name} (first at line "
                            f"{differing}): render both with render_krew.py --out --index")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=pathlib.Path, required=True)
    p.add_argument("--archives", type=pathlib.Path)
    p.add_argument("--index", type=pathlib.Path,
                   help="a custom index repository's root, holding plugins/<name>.yaml")
    a = p.parse_args()
    if not a.archives and not a.index:
        p.error("want --archives, --index or both")
    text = a.manifest.read_text()
    try:
        doc = load_yaml(text)
    except YamlError as e:
        sys.exit(f"{a.manifest.name} is not YAML Krew can read: {e}")
    name = str(((doc.get("metadata") or {}) if isinstance(doc, dict) else {}).get("name"))
    problems = [f"{a.manifest.name}: {p}" for p in plugin_problems(doc, name)]
    platforms = parse_manifest(text)
    if a.archives:
        if not platforms:
            problems.append("no platforms in the manifest")
        for platform in platforms:
            problems += check(platform, a.archives)
    if a.index:
        problems += index_problems(a.index, a.manifest, text)
        indexed = a.index / "plugins" / f"{name}.yaml"
        if a.archives and indexed.is_file() and indexed.read_text() != text:
            # Already reported as different; its own platforms must still match the archives.
            try:
                for platform in parse_manifest(indexed.read_text()):
                    problems += [f"index: {p}" for p in check(platform, a.archives)]
            except (YamlError, KeyError, TypeError, AttributeError):
                pass  # index_problems named it
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    if a.archives:
        for platform in platforms:
            labels = platform["selector"]["matchLabels"]
            print(f"ok {labels['os']}/{labels['arch']}: {platform['uri'].rsplit('/', 1)[-1]}")
    if a.index:
        print(f"ok index: plugins/{name}.yaml is {a.manifest.name}, as Krew reads it")


if __name__ == "__main__":
    main()
