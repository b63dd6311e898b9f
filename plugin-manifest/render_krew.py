#!/usr/bin/env python3
"""Render krew.yaml from the release archives in a directory.

Archives are named kubectl-mirrord-copy-<version>-<os>-<arch>.tar.gz (windows: .zip), as
`plugin-manifest/package.sh` builds them. Every platform Krew should offer must have its archive
present: the sha256 in the manifest is always computed from a real file, never typed in.

usage: render_krew.py --version v0.1.0 --archives dist --base-url URL [--out krew.yaml]
"""
import argparse
import hashlib
import pathlib
import sys

PLATFORMS = [
    ("linux", "amd64"), ("linux", "arm64"),
    ("darwin", "amd64"), ("darwin", "arm64"),
    ("windows", "amd64"), ("windows", "arm64"),
]

DESCRIPTION = """\
    Creates a disposable copy of a workload's pod, from its pod spec and with no
    liveness, readiness or startup probes, so it survives a debugger on a
    breakpoint, a target that keeps crashing, or a Job that ends. With
    --scale-down the original Deployment, StatefulSet or Argo Rollout is scaled
    to zero while the copy lives and restored afterwards, guarded by a
    cluster-side lock so two sessions never fight over one workload.
    Works with mirrord: --emit-mirrord-config writes a config targeting the copy.
"""

CAVEATS = """\
    The plugin needs, in each namespace it works in: get/list/watch/create/
    update/patch/delete on configmaps; get/list/watch/create/delete/
    deletecollection on pods; list on events; get/list/patch on deployments,
    statefulsets, replicasets, cronjobs and rollouts.argoproj.io; list/patch
    on scaledobjects.keda.sh; list on horizontalpodautoscalers; and get on
    namespaces (cluster-wide, for the scale-down guardrail).
    The Role and ClusterRole are in plugin-manifest/ of the repository.
"""


def archive_name(version: str, os_: str, arch: str) -> str:
    ext = "zip" if os_ == "windows" else "tar.gz"
    return f"kubectl-mirrord-copy-{version}-{os_}-{arch}.{ext}"


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render(version: str, archives: pathlib.Path, base_url: str) -> str:
    lines = [
        "apiVersion: krew.googlecontainertools.github.com/v1alpha2",
        "kind: Plugin",
        "metadata:",
        "  name: mirrord-copy",
        "spec:",
        f"  version: {version}",
        "  homepage: https://github.com/mirrord-copy/kubectl-mirrord-copy",
        "  shortDescription: Copy a workload's pod into a standalone, probe-free pod",
        "  description: |",
        DESCRIPTION.rstrip("\n"),
        "  caveats: |",
        CAVEATS.rstrip("\n"),
        "  platforms:",
    ]
    missing = []
    for os_, arch in PLATFORMS:
        name = archive_name(version, os_, arch)
        path = archives / name
        if not path.is_file():
            missing.append(name)
            continue
        binary = "kubectl-mirrord_copy.exe" if os_ == "windows" else "kubectl-mirrord_copy"
        lines += [
            "  - selector:",
            "      matchLabels:",
            f"        os: {os_}",
            f"        arch: {arch}",
            f"    uri: {base_url.rstrip('/')}/{version}/{name}",
            f"    sha256: {sha256(path)}",
            f"    bin: {binary}",
            "    files:",
            f"    - from: {binary}",
            "      to: .",
            "    - from: LICENSE",
            "      to: .",
        ]
    if missing:
        print("missing archives (not in the manifest): " + ", ".join(missing), file=sys.stderr)
    if len(missing) == len(PLATFORMS):
        sys.exit("no archives found: run plugin-manifest/package.sh first")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", required=True)
    p.add_argument("--archives", type=pathlib.Path, required=True)
    p.add_argument("--base-url", default="https://github.com/mirrord-copy/kubectl-mirrord-copy/releases/download")
    p.add_argument("--out", type=pathlib.Path)
    a = p.parse_args()
    text = render(a.version, a.archives, a.base_url)
    if a.out:
        a.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
