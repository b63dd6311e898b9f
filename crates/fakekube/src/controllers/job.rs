//! The Job controller (pkg/controller/job) and a CronJob controller without a clock.
//!
//! Job: pods (generateName `<job>-`) from the template, whose labels the API server's
//! defaulting has set (`batch.kubernetes.io/controller-uid`, `controller-uid`,
//! `batch.kubernetes.io/job-name`, `job-name`; see defaults.rs) with the selector on the
//! controller uid. Orphans matching the selector are adopted and the excess active pods
//! deleted (as in rs-adoption.json). Active pods = min(parallelism, completions - succeeded);
//! Complete when `completions` pods Succeeded, Failed past `backoffLimit`; `suspend` deletes
//! the active pods. Status: active, ready, succeeded, failed, terminating, startTime,
//! completionTime, uncountedTerminatedPods, conditions.
//!
//! CronJob: no schedule is evaluated (nothing fires by itself); it reports its owned active
//! Jobs in `status.active`, and a suspended CronJob reports none as running... as upstream, it
//! leaves existing Jobs alone.
//!
//! Divergences: no pod failure policy, indexed completion, finalizer-based tracking, or
//! activeDeadlineSeconds.

use std::sync::Arc;

use serde_json::{json, Value};

use super::deployment::condition;
use super::replicaset::{claim_pods, scale_pods};
use super::util::{
    self, controller_of, deleting, name, namespace, pod_active, pod_phase, pod_ready, uid,
};
use super::{rt, Controllers, Reconciler, PODS};
use crate::selectors::LabelSelector;
use crate::store::{ResKey, Store};

pub(super) const JOBS: ResKey = ("batch", "jobs");
pub(super) const CRONJOBS: ResKey = ("batch", "cronjobs");

pub(super) struct JobController;
pub(super) struct CronJobController;

impl Reconciler for JobController {
    const NAME: &'static str = "job";

    fn watches(&self) -> &'static [ResKey] {
        &[JOBS, PODS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for job in util::list_all(store, JOBS) {
            sync_job(store, &job);
        }
    }
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
    })
}

fn sync_job(store: &Store, job: &Arc<Value>) {
    let sel = &job["spec"]["selector"];
    if !sel.is_object() {
        return;
    }
    let selector = LabelSelector::from_object(sel);
    if selector.is_empty() {
        return;
    }
    let pods = claim_pods(store, job, &selector, &|_| true);
    let active: Vec<Arc<Value>> = pods.iter().filter(|p| pod_active(p)).cloned().collect();
    let succeeded = pods.iter().filter(|p| pod_phase(p) == "Succeeded").count() as i64;
    let failed = pods.iter().filter(|p| pod_phase(p) == "Failed").count() as i64;
    let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
    let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1);
    let backoff = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    let suspended = job["spec"]["suspend"].as_bool() == Some(true);
    let was_finished = finished(job);
    let complete = succeeded >= completions;
    let failed_out = failed > backoff;
    let want = if was_finished || complete || failed_out || suspended || deleting(job) {
        0
    } else {
        parallelism.min(completions - succeeded).max(0)
    };
    if !deleting(job) {
        scale_pods(store, job, &active, want as usize, &job["spec"]["template"]);
    }
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let mut status = json!({
        "active": active.len(),
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        // pods being deleted that have not finished (the kubelet is stopping them)
        "terminating": pods.iter().filter(|p| deleting(p) && !matches!(pod_phase(p), "Succeeded" | "Failed")).count(),
        "uncountedTerminatedPods": {},
    });
    // Zero counts are omitempty upstream (ready and terminating are pointers: kept).
    for k in ["active", "succeeded", "failed"] {
        if status[k] == 0 {
            status.as_object_mut().unwrap().remove(k);
        }
    }
    status["startTime"] = match job["status"]["startTime"].as_str() {
        Some(t) => json!(t),
        None if !suspended => json!(util::now()),
        None => Value::Null,
    };
    if status["startTime"].is_null() {
        status.as_object_mut().unwrap().remove("startTime");
    }
    let mut conds: Vec<Value> = Vec::new();
    if suspended {
        conds.push(condition(
            job,
            "Suspended",
            true,
            "JobSuspended",
            "Job suspended",
        ));
    }
    if complete || (was_finished && job["status"]["completionTime"].is_string()) {
        conds.push(condition(
            job,
            "SuccessCriteriaMet",
            true,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        conds.push(condition(
            job,
            "Complete",
            true,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        status["completionTime"] = job["status"]["completionTime"]
            .as_str()
            .map(|t| json!(t))
            .unwrap_or_else(|| json!(util::now()));
    } else if failed_out || was_finished {
        conds.push(condition(
            job,
            "FailureTarget",
            true,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
        conds.push(condition(
            job,
            "Failed",
            true,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    // Conditions carry lastProbeTime, not lastUpdateTime, on Jobs.
    for c in conds.iter_mut() {
        c["lastProbeTime"] = c["lastUpdateTime"].take();
        c.as_object_mut().unwrap().remove("lastUpdateTime");
    }
    if !conds.is_empty() {
        status["conditions"] = json!(conds);
    }
    util::write_status(store, JOBS, job, status);
}

impl Reconciler for CronJobController {
    const NAME: &'static str = "cronjob";

    fn watches(&self) -> &'static [ResKey] {
        &[CRONJOBS, JOBS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        let jrt = rt(store, JOBS);
        for cj in util::list_all(store, CRONJOBS) {
            let (jobs, _) = store.list(&jrt, Some(namespace(&cj)), &|j| {
                controller_of(j).is_some_and(|r| r["uid"] == uid(&cj)) && !finished(j)
            });
            let mut status = cj["status"].clone();
            if !status.is_object() {
                status = json!({});
            }
            if jobs.is_empty() {
                status.as_object_mut().unwrap().remove("active");
            } else {
                let refs: Vec<Value> = jobs
                    .iter()
                    .map(|j| json!({"kind": "Job", "namespace": namespace(j), "name": name(j), "uid": uid(j), "apiVersion": "batch/v1", "resourceVersion": j["metadata"]["resourceVersion"]}))
                    .collect();
                status["active"] = json!(refs);
            }
            util::write_status(store, CRONJOBS, &cj, status);
        }
    }
}
