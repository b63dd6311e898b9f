//! Workload manifests as YAML text, ready for `TestEnv::apply_yaml`, in two shapes:
//! [`plain`] workloads of one pause container (for the scale-down tests, which care about
//! counts), and [`probed`] ones whose pod template has everything a copy must handle (probes
//! everywhere, a sidecar, init containers, template labels and annotations).

pub mod plain;
pub mod probed;
