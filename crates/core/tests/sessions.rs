//! The session lifecycle against the fake API server.

mod common;

use std::time::Duration;

use common::{
    env_with_workloads, quiet, ready_status, recorder, request, set_copy_status,
    set_copy_status_after_event,
};
use fakekube::{Fault, FaultAction};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::Api;
use mirrord_copy_core::session::{self, Progress};
use mirrord_copy_core::{CopyOptions, Error};
use serde_json::json;

async fn count(env: &fakekube::harness::TestEnv, selector: &str) -> (usize, usize) {
    let lp = ListParams::default().labels(selector);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    (
        cms.list(&lp).await.unwrap().items.len(),
        pods.list(&lp).await.unwrap().items.len(),
    )
}

const MANAGED: &str = "app.kubernetes.io/managed-by=kubectl-mirrord-copy";

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn create_list_find_end() {
    let env = env_with_workloads().await;
    let req = request(&env, "deploy/py-serv-deployment/container/app");
    let (seen, progress) = recorder();
    let s = session::create(&env.client, &req, &*progress)
        .await
        .unwrap();
    assert_eq!(s.target, "deployment/py-serv-deployment/container/app");
    assert!(s.copy_pod.starts_with("py-serv-deployment-copy-"));
    assert!(s.expires.is_some());

    // the pod: owned by the session ConfigMap, no probes, our labels
    let cm = env
        .get_json(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            &format!("mirrord-copy-session-{}", s.id),
        )
        .await
        .expect("session ConfigMap");
    assert_eq!(cm["data"]["copyPod"], s.copy_pod.as_str());
    assert_eq!(cm["data"]["scaleDown"], "false");
    let pod = env.get_pod(&s.copy_pod).await.expect("copy pod");
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ConfigMap");
    assert_eq!(owner["uid"], cm["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert!(pod["spec"]["containers"][0].get("livenessProbe").is_none());
    assert!(pod["spec"]["initContainers"][0]
        .get("readinessProbe")
        .is_none());
    assert_eq!(pod["metadata"]["labels"]["app"], "py-serv");
    assert_eq!(
        pod["metadata"]["annotations"]["mirrord-copy.io/original-target"],
        "deployment/py-serv-deployment/container/app"
    );
    let events = seen.lock().unwrap().clone();
    assert!(matches!(events[0], Progress::Resolved { .. }), "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, Progress::CopyCreated { .. })));

    let listed = session::list(&env.client, Some(&env.namespace))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, s.id);
    assert!(listed[0].copy_phase.is_some());
    let all = session::list(&env.client, None).await.unwrap();
    assert!(all.iter().any(|x| x.id == s.id));

    let by_pod = session::find_by_pod(&env.client, &env.namespace, &s.copy_pod)
        .await
        .unwrap();
    assert_eq!(by_pod.map(|x| x.id), Some(s.id.clone()));
    let by_target = session::find_by_target(
        &env.client,
        Some(&env.namespace),
        &"deployment/py-serv-deployment".parse().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(by_target.len(), 1);

    let report = session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
    assert!(report.found);
    assert_eq!(count(&env, MANAGED).await, (0, 0));
    // idempotent
    let again = session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
    assert!(!again.found);
    assert!(session::list(&env.client, Some(&env.namespace))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn wait_returns_once_ready() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.wait = true;
    let kubelet = set_copy_status(&env, ready_status());
    let (seen, progress) = recorder();
    let s = session::create(&env.client, &req, &*progress)
        .await
        .unwrap();
    kubelet.await.unwrap();
    assert!(seen.lock().unwrap().contains(&Progress::Ready {
        pod: s.copy_pod.clone()
    }));
    session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn failed_copy_reports_reasons_and_events_and_leaves_nothing() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.wait = true;
    // The copy's image (`py-serv:1`) is not in the fake's registry: its kubelet fails the pull
    // the same way, so it cannot win a race to Ready.
    let kubelet = set_copy_status_after_event(
        &env,
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "py-serv:1",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        Some(("Failed", "Failed to pull image \"py-serv:1\": not found")),
    );
    let err = session::create(&env.client, &req, &*quiet())
        .await
        .unwrap_err();
    kubelet.await.unwrap();
    assert_eq!(err.exit_code(), 6, "{err}");
    let text = err.to_string();
    assert!(text.contains("ImagePullBackOff"), "{text}");
    assert!(
        text.contains("Warning Failed: Failed to pull image"),
        "{text}"
    );
    assert_eq!(count(&env, MANAGED).await, (0, 0), "everything removed");
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn never_ready_times_out_and_leaves_nothing() {
    // Without a kubelet the copy never becomes Ready: Timeout, and everything removed.
    let env = env_with_workloads().await;
    never_ready(&env);
    let mut req = request(&env, "sts/db");
    req.wait = true;
    req.timeout = Duration::from_millis(600);
    let err = session::create(&env.client, &req, &*quiet())
        .await
        .unwrap_err();
    if env.fake().is_some() && matches!(err, Error::Timeout(_)) {
        assert_eq!(err.exit_code(), 7);
        assert!(err.to_string().contains("did not become Ready"), "{err}");
    }
    assert_eq!(count(&env, MANAGED).await, (0, 0));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn reuse_returns_the_live_session() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "cj/nightly");
    req.reuse = true;
    let first = session::create(&env.client, &req, &*quiet()).await.unwrap();
    assert!(first.provisional, "created provisional");
    // Not confirmed yet: another create in progress (or a dead one), not reused.
    let other = session::create(&env.client, &req, &*quiet()).await.unwrap();
    assert_ne!(first.id, other.id);
    session::end_session(&env.client, &other, &*quiet())
        .await
        .unwrap();
    let first = first.as_confirmed(mirrord_copy_lock::clock::now());
    session::confirm(&env.client, &first).await.unwrap();
    let second = session::create(&env.client, &req, &*quiet()).await.unwrap();
    assert_eq!(first.id, second.id);
    assert!(!second.provisional && second.confirmed.is_some());
    // different options: a new session
    req.options = CopyOptions {
        exclude_containers: vec![],
        exclude_init_containers: vec![],
        ..Default::default()
    };
    req.owner = "someone-else@host".into();
    let third = session::create(&env.client, &req, &*quiet()).await.unwrap();
    assert_ne!(first.id, third.id);
    assert_eq!(
        session::list(&env.client, Some(&env.namespace))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn bad_options_and_scale_down_write_nothing() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.options.exclude_containers = vec!["app".into(), "metrics".into()];
    let err = session::create(&env.client, &req, &*quiet())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    req.options.exclude_containers = vec!["nope".into()];
    let err = session::create(&env.client, &req, &*quiet())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    // scale-down of a Job can never work
    let mut job = request(&env, "job/migrate");
    job.scale_down = true;
    let err = session::create(&env.client, &job, &*quiet())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert_eq!(count(&env, MANAGED).await, (0, 0));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn preview_writes_nothing() {
    let env = env_with_workloads().await;
    let req = request(&env, "job/migrate");
    let pod = session::preview(&env.client, &req).await.unwrap();
    let json = serde_json::to_value(&pod).unwrap();
    assert_eq!(json["spec"]["restartPolicy"], "Never");
    assert!(json["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("migrate-copy-"));
    // a dry run of an impossible scale-down says so
    let mut scale_job = request(&env, "job/migrate");
    scale_job.scale_down = true;
    let err = session::preview(&env.client, &scale_job).await.unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert_eq!(count(&env, MANAGED).await, (0, 0));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn list_is_one_paginated_list_per_kind() {
    let env = env_with_workloads().await;
    for t in ["deploy/py-serv-deployment", "sts/db", "po/debug-me"] {
        session::create(&env.client, &request(&env, t), &*quiet())
            .await
            .unwrap();
    }
    let fake = env.fake().expect("fake API server");
    let before = fake.requests().len();
    let sessions = session::list(&env.client, Some(&env.namespace))
        .await
        .unwrap();
    let after: Vec<_> = fake.requests()[before..].to_vec();
    assert_eq!(sessions.len(), 3);
    let targets: Vec<&str> = sessions.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "deployment/py-serv-deployment",
            "pod/debug-me",
            "statefulset/db"
        ]
    );
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|r| r.verb == "list"));
}

async fn replicas(env: &fakekube::harness::TestEnv, name: &str) -> i64 {
    let d = env
        .get_json("apps", "v1", "Deployment", "deployments", name)
        .await
        .expect("deployment");
    d["spec"]["replicas"].as_i64().unwrap()
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn scale_down_session_scales_after_ready_and_restores_on_end() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.scale_down = true;
    let kubelet = set_copy_status(&env, ready_status());
    let (seen, progress) = recorder();
    let s = session::create(&env.client, &req, &*progress)
        .await
        .unwrap();
    kubelet.await.unwrap();
    assert!(s.scale_down);
    assert_eq!(replicas(&env, "py-serv-deployment").await, 0);
    {
        let events = seen.lock().unwrap();
        let ready = events
            .iter()
            .position(|e| matches!(e, Progress::Ready { .. }));
        let scaled = events
            .iter()
            .position(|e| matches!(e, Progress::ScaledDown { from: 2, .. }));
        assert!(ready.is_some() && scaled > ready, "{events:?}");
    }

    // a second scale-down of the same workload: conflict, nothing created, first untouched
    let mut second = request(&env, "deploy/py-serv-deployment");
    second.scale_down = true;
    second.owner = "other@host".into();
    let err = session::create(&env.client, &second, &*quiet())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 9, "{err}");
    assert_eq!(
        session::list(&env.client, Some(&env.namespace))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(replicas(&env, "py-serv-deployment").await, 0);

    session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
    assert_eq!(replicas(&env, "py-serv-deployment").await, 2);
    // `end` deletes the copy gracefully and does not wait for its containers to stop (a
    // kubelet removes it after): wait for that, as `delete --wait` does, then count.
    env.wait_pods_gone(MANAGED, Duration::from_secs(60)).await;
    assert_eq!(
        count(&env, MANAGED).await,
        (0, 0),
        "session, lock and copy gone"
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn failed_scale_down_copy_restores_and_leaves_nothing() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.scale_down = true;
    req.timeout = Duration::from_millis(500);
    never_ready(&env);
    let err = session::create(&env.client, &req, &*quiet())
        .await
        .unwrap_err();
    if env.fake().is_some() {
        assert_eq!(err.exit_code(), 7, "{err}");
    }
    assert_eq!(replicas(&env, "py-serv-deployment").await, 2);
    assert_eq!(count(&env, MANAGED).await, (0, 0));
    let d = env
        .get_json(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "py-serv-deployment",
        )
        .await
        .unwrap();
    let annotations = d["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        !annotations
            .keys()
            .any(|k| k.starts_with("mirrord-copy.io/")),
        "{annotations:?}"
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn forbidden_pod_create_names_it_and_cleans_up() {
    let env = env_with_workloads().await;
    let fake = env.fake().expect("fake API server");
    let token = fake.rbac().user_token("no-pods");
    fake.rbac().allow(
        "no-pods",
        fakekube::Rule::new(&["get", "list", "watch"], &["*"], &["*"]),
    );
    fake.rbac().allow(
        "no-pods",
        fakekube::Rule::new(&["create", "patch", "delete"], &[""], &["configmaps"]),
    );
    let client = common::client_with_token(&env, &token).await;
    let (seen, progress) = recorder();
    let req = request(&env, "deploy/py-serv-deployment");
    let err = session::create(&client, &req, &*progress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 5, "{err}");
    assert!(
        matches!(&err, Error::Forbidden { verb, resource, .. } if verb == "create" && resource == "pods"),
        "{err:?}"
    );
    let warnings: Vec<Progress> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| matches!(p, Progress::Warning(_)))
        .cloned()
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        count(&env, MANAGED).await,
        (0, 0),
        "the session ConfigMap was removed"
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn end_deletes_a_copy_whose_labels_were_edited_away() {
    let env = env_with_workloads().await;
    let s = session::create(&env.client, &request(&env, "po/debug-me"), &*quiet())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    pods.patch(
        &s.copy_pod,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"mirrord-copy.io/role": null}}})),
    )
    .await
    .unwrap();
    let report = session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
    assert!(
        report.deleted.contains(&format!("pod/{}", s.copy_pod)),
        "{report:?}"
    );
    assert!(env
        .get_pod(&s.copy_pod)
        .await
        .is_none_or(|p| p["metadata"].get("deletionTimestamp").is_some()));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn waiting_survives_a_server_blip() {
    let env = env_with_workloads().await;
    let fake = env.fake().expect("fake API server");
    // The watch of the copy (create watches from the POST's resourceVersion: no GET first).
    fake.faults().add(
        Fault::on(
            "GET",
            "/pods",
            FaultAction::Fail(fakekube::faults::status_error(503)),
        )
        .with_query("watch="),
    );
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.wait = true;
    let kubelet = set_copy_status(&env, ready_status());
    let s = session::create(&env.client, &req, &*quiet()).await.unwrap();
    kubelet.await.unwrap();
    let failed_gets = fake
        .requests()
        .iter()
        .filter(|r| r.verb == "watch" && r.status == 503)
        .count();
    assert_eq!(failed_gets, 1);
    session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn run_sessions_have_no_expiry_and_take_heartbeats() {
    let env = env_with_workloads().await;
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.ttl = None;
    req.wait = true;
    let kubelet = set_copy_status(&env, ready_status());
    let s = session::create(&env.client, &req, &*quiet()).await.unwrap();
    kubelet.await.unwrap();
    assert_eq!(s.expires, None);
    let cm_name = format!("mirrord-copy-session-{}", s.id);
    let before = env
        .get_json("", "v1", "ConfigMap", "configmaps", &cm_name)
        .await
        .unwrap();
    assert!(before["data"].get("expires").is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    session::heartbeat(&env.client, &s).await.unwrap();
    let after = env
        .get_json("", "v1", "ConfigMap", "configmaps", &cm_name)
        .await
        .unwrap();
    assert_ne!(before["data"]["heartbeat"], after["data"]["heartbeat"]);
    // reuse never picks a run session: it ends with its command
    let mut detached = request(&env, "deploy/py-serv-deployment");
    detached.reuse = true;
    let other = session::create(&env.client, &detached, &*quiet())
        .await
        .unwrap();
    assert_ne!(other.id, s.id);
    session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
    assert!(session::heartbeat(&env.client, &s).await.is_err());
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn a_pod_targets_copy_is_admitted_afresh() {
    let env = env_with_workloads().await;
    let s = session::create(&env.client, &request(&env, "po/debug-me"), &*quiet())
        .await
        .unwrap();
    let original = env.get_pod("debug-me").await.unwrap();
    let copy = env.get_pod(&s.copy_pod).await.unwrap();
    let token_volumes = |pod: &serde_json::Value| -> Vec<String> {
        pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .filter(|n| n.starts_with("kube-api-access-"))
            .map(str::to_string)
            .collect()
    };
    // whatever admission injected into the original, the copy has exactly what admission
    // injected into it: at most one token volume, mounted once per container
    assert!(token_volumes(&copy).len() <= 1, "{copy}");
    if env.fake().is_some() {
        // the fake's admission injects one, as the real ServiceAccount plugin does: the
        // original's was dropped and a fresh one injected
        assert_eq!(token_volumes(&copy).len(), 1);
        assert_ne!(token_volumes(&original), token_volumes(&copy));
    }
    assert_eq!(
        token_volumes(&original).len(),
        token_volumes(&copy).len(),
        "admission treats the copy like the original"
    );
    // Besides the placeholder's read-only mount, the token's.
    let mounts = copy["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["name"] != "mirrord-copy-placeholder")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(mounts, token_volumes(&copy).len());
    assert!(copy["spec"]["containers"][0]
        .get("readinessProbe")
        .is_none());
}

/// A cluster whose kubelet does not run: no pod is bound or started, none becomes Ready.
fn never_ready(env: &fakekube::harness::TestEnv) {
    if let Some(fake) = env.fake() {
        fake.controllers().set("kubelet", false);
    }
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn no_workload_controller_adopts_or_deletes_a_copy() {
    let env = env_with_workloads().await;
    let mut copies = Vec::new();
    for t in [
        "deploy/py-serv-deployment",
        "sts/db",
        "rs/bare-rs",
        "job/migrate",
        "rollout/checkout",
    ] {
        copies.push(
            session::create(&env.client, &request(&env, t), &*quiet())
                .await
                .unwrap(),
        );
    }
    // several controller resyncs
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for s in &copies {
        let pod = env
            .get_pod(&s.copy_pod)
            .await
            .unwrap_or_else(|| panic!("{} deleted", s.target));
        assert!(
            pod["metadata"].get("deletionTimestamp").is_none(),
            "{}: being deleted",
            s.target
        );
        let owners = pod["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1, "{}: {owners:?}", s.target);
        assert_eq!(owners[0]["kind"], "ConfigMap", "{}", s.target);
    }
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn waiting_watches_and_survives_an_api_server_restart() {
    let env = env_with_workloads().await;
    let fake = env.fake().expect("fake API server");
    let mut req = request(&env, "deploy/py-serv-deployment");
    req.wait = true;
    req.timeout = Duration::from_secs(30);
    let client = env.client.clone();
    let (seen, progress) = recorder();
    let creating = tokio::spawn(async move { session::create(&client, &req, &*progress).await });
    let pod_watches = || {
        fake.requests()
            .iter()
            .filter(|r| r.verb == "watch" && r.query.contains("metadata.name"))
            .count()
    };
    env.wait_until(
        "the copy pod to be watched",
        Duration::from_secs(10),
        || async { (pod_watches() > 0).then_some(()) },
    )
    .await;
    // The watch breaks with the server; the wait goes back to GET, then watches again.
    fake.restart().await.unwrap();
    env.wait_until(
        "the copy pod to be watched again",
        Duration::from_secs(10),
        || async { (pod_watches() > 1).then_some(()) },
    )
    .await;
    set_copy_status(&env, ready_status()).await.unwrap();
    let s = creating.await.unwrap().unwrap();
    assert!(seen.lock().unwrap().contains(&Progress::Ready {
        pod: s.copy_pod.clone()
    }));
    // A watch, not a poll: one GET before each watch, none in between.
    let gets = fake
        .requests()
        .iter()
        .filter(|r| r.verb == "get" && r.path.ends_with(&format!("/pods/{}", s.copy_pod)))
        .count();
    assert!(
        gets <= pod_watches(),
        "{gets} GETs for {} watches",
        pod_watches()
    );
    session::end(&env.client, &env.namespace, &s.id, &*quiet())
        .await
        .unwrap();
}
