#!/usr/bin/env bash
# One-command demo that needs no cluster: builds and installs the plugin, starts the sandbox
# (an in-process Kubernetes API server seeded with demo workloads), and walks through a
# scale-down session. Everything it starts is stopped on exit.
#   usage: scripts/demo.sh            (set KEEP=1 to leave the sandbox running afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "Building and installing kubectl-mirrord_copy (release; the first build takes a few minutes)..."
target_dir=${CARGO_TARGET_DIR:-target}
cargo install --locked --quiet --path crates/kubectl-mirrord-copy --target-dir "$target_dir"
cargo build --locked --quiet --release -p fakekube --bin mirrord-copy-sandbox --target-dir "$target_dir"
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$bin_dir:$PATH"

work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
export MIRRORD_COPY_STATE_DIR="$work/state"
"$target_dir/release/mirrord-copy-sandbox" --kubeconfig "$KUBECONFIG" --demo >"$work/sandbox.log" 2>&1 &
sandbox=$!
cleanup() {
  if [ -z "${KEEP:-}" ]; then kill "$sandbox" 2>/dev/null || true; wait "$sandbox" 2>/dev/null || true; rm -rf "$work"; fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q ready "$work/sandbox.log" && break; sleep 0.1; done
grep ready "$work/sandbox.log"

# Through kubectl when it is installed (it finds the plugin on PATH), else the binary itself.
if command -v kubectl >/dev/null 2>&1; then plugin=(kubectl mirrord-copy); else plugin=(kubectl-mirrord_copy); fi
run() { step "${plugin[*]} $*"; "${plugin[@]}" "$@"; }

run status
run create deployment/py-serv-deployment --scale-down
run status
if command -v kubectl >/dev/null 2>&1; then
  step "kubectl get deployment py-serv-deployment"; kubectl get deployment py-serv-deployment
fi
run create statefulset/db --scale-down --no-wait -o name
run create deployment/py-serv-deployment --scale-down || echo "(exit code $?: the workload is already scaled down by the first session)"
run status -o wide
run delete --all
run status
if [ -n "${KEEP:-}" ]; then
  echo; echo "Sandbox left running (pid $sandbox): export KUBECONFIG=$KUBECONFIG"
fi
