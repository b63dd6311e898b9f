#!/usr/bin/env python3
"""Render krew.yaml and the custom index's plugins/mirrord-copy.yaml from the release archives.

Archives are named kubectl-mirrord-copy-<version>-<os>-<arch>.tar.gz (windows: .zip), as
`plugin-manifest/package.sh` builds them. Every platform Krew should offer must have its archive
present: the sha256 in the manifest is always computed from a real file, never typed in.

krew.yaml serves `kubectl krew install --manifest=krew.yaml`; the same text, byte for byte, is
written to <index>/plugins/mirrord-copy.yaml with --index, the layout Krew reads from a custom
index repository (`kubectl krew index add mirrord-copy <git-url>`: a git repository with a
plugins/ directory at its root holding one <metadata.name>.yaml per plugin). One rendering, two
files, so the two can never drift apart.

--from-manifest re-renders an existing manifest (one rendered from archives earlier) where the
archives are not at hand: the version and each platform's uri and sha256 are carried over from
it unchanged, everything else (descriptions, caveats, bin, files) comes from this renderer.

The caveats list the rights the plugin needs, read from plugin-manifest/role.yaml and
clusterrole.yaml, so they are those files' rules and no hand-kept summary of them.

usage: render_krew.py --version v0.1.0 --archives dist [--base-url URL] [--out krew.yaml] [--index DIR]
       render_krew.py --from-manifest krew.yaml [--out krew.yaml] [--index DIR]
"""
import argparse
import hashlib
import pathlib
import re
import sys

NAME = "mirrord-copy"
HERE = pathlib.Path(__file__).resolve().parent

PLATFORMS = [
    ("linux", "amd64"), ("linux", "arm64"),
    ("darwin", "amd64"), ("darwin", "arm64"),
    ("windows", "amd64"), ("windows", "arm64"),
]

# `kubectl krew search` shows this line: at most 80 characters, no line break.
SHORT_DESCRIPTION = "Copy a workload's pod as a probe-free mirrord target running a placeholder"

# `kubectl krew info` shows this. krew-index reviewers check plugins for overlap, so it says
# what `kubectl debug --copy-to` and `dup` already do and what this plugin does that they do not.
DESCRIPTION = """\
Makes a stand-alone target pod for mirrord from a workload's pod spec
(Deployment, StatefulSet, ReplicaSet, Argo Rollout, Job, CronJob or Pod),
with no liveness, readiness or startup probes. Its target container runs a
placeholder that never exits instead of the application: your own process,
under mirrord, plays the application's part with the pod's image, env,
volumes and network, while the original keeps crashing or its Job has ended.
An init container copies the placeholder in, so it works in distroless and
scratch images; --keep-command runs the application instead. The copy keeps
the pod's labels, but a readiness gate holds it out of Service ready
endpoints unless it replaces a scaled-down workload.

--scale-down scales the original to zero while the copy lives, under a
cluster-side lock (one session per workload at a time), and restores it
afterwards. The count to restore is recorded in the cluster, so `gc` (by
hand, or as the CronJob in plugin-manifest/) puts the workload back after a
crash. Sessions expire (--ttl), are listed by `status` and ended by
`delete`; --emit-mirrord-config writes a mirrord config targeting the copy.

How it differs: `kubectl debug --copy-to` and the `dup` plugin also copy a
pod without its probes, and can swap its command for one you give (which
the image must contain). Neither scales the original workload down and
restores it (`kubectl debug --replace` deletes the original pod, and its
controller makes a new one), nor tracks its copies as sessions to list,
expire and clean up.
"""

CAVEATS_HEAD = """\
The plugin needs these rights, as plugin-manifest/role.yaml of the
repository grants them (a Role, bound in each namespace it works in):
"""

CAVEATS_CLUSTER = """\
and, for -A (every namespace), plugin-manifest/clusterrole.yaml:
"""


def archive_name(version: str, os_: str, arch: str) -> str:
    ext = "zip" if os_ == "windows" else "tar.gz"
    return f"kubectl-{NAME}-{version}-{os_}-{arch}.{ext}"


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def flow_list(value: str, where: str) -> list:
    """The items of a YAML flow sequence of plain or double-quoted strings: ["a", "b"]."""
    value = value.strip()
    if not (value.startswith("[") and value.endswith("]")):
        sys.exit(f"{where}: want a [..] list, got {value!r}")
    return [item.strip().strip('"') for item in value[1:-1].split(",") if item.strip()]


def rbac_rules(path: pathlib.Path) -> list:
    """(apiGroups, resources, verbs) of each rule in a Role/ClusterRole as the repository writes
    them (flow lists, one rule per `- apiGroups:` item)."""
    rules = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"(- )?(apiGroups|resources|verbs):(.*)", line)
        if not m:
            continue
        if m.group(1):
            rules.append({})
        elif not rules:
            sys.exit(f"{path}:{n}: {m.group(2)} outside a rule")
        rules[-1][m.group(2)] = flow_list(m.group(3), f"{path}:{n}")
    for rule in rules:
        if set(rule) != {"apiGroups", "resources", "verbs"}:
            sys.exit(f"{path}: a rule without apiGroups, resources and verbs: {rule}")
    if not rules:
        sys.exit(f"{path}: no rules")
    return [(r["apiGroups"], r["resources"], r["verbs"]) for r in rules]


def rights(path: pathlib.Path) -> list:
    """One caveat line per rule: `resources (group): verbs`, wrapped to the manifest's width."""
    lines = []
    for groups, resources, verbs in rbac_rules(path):
        group = "".join(f" ({g})" for g in groups if g)
        text = f"- {', '.join(resources)}{group}: {', '.join(verbs)}"
        while len(text) > 74:
            cut = text.rindex(" ", 0, 74)
            lines.append(text[:cut])
            text = "  " + text[cut + 1:]
        lines.append(text)
    return lines


def caveats() -> str:
    lines = CAVEATS_HEAD.splitlines() + rights(HERE / "role.yaml")
    lines += CAVEATS_CLUSTER.splitlines() + rights(HERE / "clusterrole.yaml")
    return "\n".join(lines) + "\n"


def block(text: str) -> list:
    """A literal block scalar's lines, indented under its key."""
    return [("    " + line).rstrip() for line in text.rstrip("\n").splitlines()]


def render_platforms(version: str, platforms: list) -> str:
    """The manifest for `platforms`: (os, arch, uri, sha256) in PLATFORMS order."""
    lines = [
        "apiVersion: krew.googlecontainertools.github.com/v1alpha2",
        "kind: Plugin",
        "metadata:",
        f"  name: {NAME}",
        "spec:",
        f"  version: {version}",
        "  homepage: https://github.com/mirrord-copy/kubectl-mirrord-copy",
        f"  shortDescription: {SHORT_DESCRIPTION}",
        "  description: |",
        *block(DESCRIPTION),
        "  caveats: |",
        *block(caveats()),
        "  platforms:",
    ]
    for os_, arch, uri, digest in platforms:
        binary = "kubectl-mirrord_copy.exe" if os_ == "windows" else "kubectl-mirrord_copy"
        lines += [
            "  - selector:",
            "      matchLabels:",
            f"        os: {os_}",
            f"        arch: {arch}",
            f"    uri: {uri}",
            f"    sha256: {digest}",
            f"    bin: {binary}",
            "    files:",
            f"    - from: {binary}",
            "      to: .",
            "    - from: LICENSE",
            "      to: .",
        ]
    return "\n".join(lines) + "\n"


def render(version: str, archives: pathlib.Path, base_url: str) -> str:
    platforms, missing = [], []
    for os_, arch in PLATFORMS:
        name = archive_name(version, os_, arch)
        path = archives / name
        if not path.is_file():
            missing.append(name)
            continue
        platforms.append((os_, arch, f"{base_url.rstrip('/')}/{version}/{name}", sha256(path)))
    if missing:
        print("missing archives (not in the manifest): " + ", ".join(missing), file=sys.stderr)
    if not platforms:
        sys.exit("no archives found: run plugin-manifest/package.sh first")
    return render_platforms(version, platforms)


def rerender(manifest: pathlib.Path) -> str:
    """`manifest` rendered again: its version and platforms' uri and sha256, the rest from here."""
    sys.path.insert(0, str(HERE))
    from verify_archives import load_yaml  # the one YAML reader of plugin-manifest/

    data = load_yaml(manifest.read_text())
    version = data["spec"]["version"]
    found = {}
    for p in data["spec"].get("platforms") or []:
        labels = p["selector"]["matchLabels"]
        key = (labels["os"], labels["arch"])
        if key not in PLATFORMS or key in found:
            sys.exit(f"{manifest}: unexpected or repeated platform {key[0]}/{key[1]}")
        want = archive_name(version, *key)
        if p["uri"].rsplit("/", 1)[-1] != want:
            sys.exit(f"{manifest}: {key[0]}/{key[1]} uri {p['uri']} does not name {want}")
        found[key] = (p["uri"], p["sha256"])
    if not found:
        sys.exit(f"{manifest}: no platforms")
    return render_platforms(version, [(*k, *found[k]) for k in PLATFORMS if k in found])


def write_index(index: pathlib.Path, text: str) -> pathlib.Path:
    plugins = index / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    path = plugins / f"{NAME}.yaml"
    path.write_text(text)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version")
    p.add_argument("--archives", type=pathlib.Path)
    p.add_argument("--from-manifest", type=pathlib.Path,
                   help="carry version, uri and sha256 over from this manifest instead of archives")
    p.add_argument("--base-url", default="https://github.com/mirrord-copy/kubectl-mirrord-copy/releases/download")
    p.add_argument("--out", type=pathlib.Path, help="write the manifest here (else stdout)")
    p.add_argument("--index", type=pathlib.Path,
                   help="also write it as INDEX/plugins/mirrord-copy.yaml (custom index layout)")
    a = p.parse_args()
    if a.from_manifest:
        if a.version or a.archives:
            p.error("--from-manifest takes the version and sha256 from the manifest: no --version or --archives")
        text = rerender(a.from_manifest)
    elif a.version and a.archives:
        text = render(a.version, a.archives, a.base_url)
    else:
        p.error("want --version and --archives, or --from-manifest")
    if a.out:
        a.out.write_text(text)
    if a.index:
        print(f"rendered {write_index(a.index, text)}", file=sys.stderr)
    if not a.out:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
