//! The attach/detach controller's part: a ReadWriteOnce volume is attached to one pod at a
//! time; another pod using it waits with `FailedAttachVolume` (Multi-Attach error).

use serde_json::Value;

use super::scheduler::fully_bound;
use super::{Kubelet, Snapshot};
use crate::controllers::util::{self, name, namespace, uid};
use crate::controllers::volumes::claim_names;
use crate::controllers::{rt, PVCS};
use crate::store::Store;
use crate::volumes::{access_modes, ROX, RWX};

impl Kubelet {
    /// What keeps a bound pod's volumes from being ready, as (Event reason, message) pairs
    /// (none to send when the wait has no Event); None when every volume can be used.
    pub(super) fn volume_wait(
        &mut self,
        store: &Store,
        pod: &Value,
        snap: &Snapshot,
    ) -> Option<Vec<(&'static str, String)>> {
        let crt = rt(store, PVCS);
        let mut waits = None::<Vec<(&'static str, String)>>;
        for c in claim_names(pod) {
            let claim = match store.get(&crt, Some(namespace(pod)), c) {
                Ok(claim) if fully_bound(&claim) => claim,
                // Only a pod created already bound gets here (the scheduler checked the rest).
                _ => {
                    waits.get_or_insert_with(Vec::new);
                    continue;
                }
            };
            let modes = access_modes(&claim);
            if modes.is_empty() || modes.iter().any(|m| *m == RWX || *m == ROX) {
                continue; // util.IsMultiAttachAllowed: ReadWriteMany / ReadOnlyMany share
            }
            let key = format!("{}/{c}", namespace(pod));
            let holder = match self.attached.get(&key) {
                Some(h) => h.clone(),
                None => {
                    // After a restart of the fake: a pod already running with it holds it.
                    let running = snap.users.values().find(|p| {
                        uid(p) != uid(pod)
                            && namespace(p) == namespace(pod)
                            && util::pod_phase(p) == "Running"
                            && claim_names(p).any(|x| x == c)
                    });
                    let h = running.map_or(uid(pod), |p| uid(p)).to_string();
                    self.attached.insert(key, h.clone());
                    h
                }
            };
            if holder != uid(pod) {
                let other = snap.users.get(&holder).map_or("", |p| name(p));
                let volume = claim["spec"]["volumeName"].as_str().unwrap_or("");
                // reportMultiAttachError, for pods in the claim's namespace.
                waits.get_or_insert_with(Vec::new).push((
                    "FailedAttachVolume",
                    format!(
                        "Multi-Attach error for volume \"{volume}\" Volume is already used by pod(s) {other}"
                    ),
                ));
            }
        }
        waits
    }
}
