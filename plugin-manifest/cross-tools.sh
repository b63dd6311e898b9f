#!/usr/bin/env bash
# Install what `package.sh all` needs to cross-build from a Debian 12 x86_64 machine, from
# Debian's and PyPI's packages only: Debian's rustc-web (a current compiler) with its cargo and
# the matching Rust source (for -Zbuild-std), and zig with cargo-zigbuild as C compiler and
# linker for every target.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src
python3 -m pip install --quiet ziglang cargo-zigbuild
/usr/bin/rustc --version
cargo-zigbuild --version
