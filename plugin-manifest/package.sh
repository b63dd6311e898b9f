#!/usr/bin/env bash
# Build the release binary for this machine's platform, pack it as Krew expects, and render
# krew.yaml from every archive in dist/ (archives for other platforms are built on those
# platforms, e.g. by a release CI matrix, and dropped into dist/ before rendering).
#   usage: plugin-manifest/package.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)}
case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=windows ;; esac
case "$(uname -m)" in x86_64|amd64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) echo "unsupported arch" >&2; exit 1 ;; esac

cargo build --release --locked -p kubectl-mirrord-copy
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/kubectl-mirrord_copy" LICENSE README.md "$stage/"
mkdir -p dist
archive="dist/kubectl-mirrord-copy-${version}-${os}-${arch}.tar.gz"
tar -C "$stage" -czf "$archive" kubectl-mirrord_copy LICENSE README.md
echo "packed $archive"
python3 plugin-manifest/render_krew.py --version "$version" --archives dist --out krew.yaml
echo "rendered krew.yaml"
