//! `status` byte for byte against the reference layout (zero, one, many sessions, -A), its
//! wide/json/yaml forms, and `delete` (by pod, --target, --all; idempotent; restores counts).

use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use crate::plugin_support::*;

const WIDE_HEADERS: [&str; 13] = [
    "Original Target",
    "Namespace",
    "Copy Pod Name",
    "Scale Down?",
    "Owner",
    "Host",
    "Age",
    "Phase",
    "Runs",
    "Expires",
    "Yours",
    "Replicas",
    "Notes",
];

#[tokio::test]
async fn no_sessions() {
    let env = TestEnv::new().await;
    assert_eq!(mc(&env, &["status"]).await.ok(), "No active copy targets\n");
    assert_eq!(
        mc(&env, &["status", "-o", "wide"]).await.ok(),
        "No active copy targets\n"
    );
    let doc: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    assert_eq!(
        doc,
        json!({"apiVersion": "mirrord-copy.io/v1", "kind": "CopySessionList", "items": []})
    );
    let doc: Value =
        serde_yaml_ng::from_str(mc(&env, &["status", "-o", "yaml"]).await.ok()).unwrap();
    assert_eq!(doc["items"], json!([]));
    if env.fake().is_some() {
        // The fake holds only this test's namespaces.
        assert_eq!(
            mc(&env, &["status", "-A"]).await.ok(),
            "No active copy targets\n"
        );
    }
}

#[tokio::test]
async fn one_scale_down_session_is_the_reference_layout() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("py-serv-deployment", 2)).await;
    let pod = create(&env, &["deployment/py-serv-deployment", "--scale-down"]).await;
    let expected = reference_table(
        &STATUS_HEADERS,
        &[row(
            "deployment/py-serv-deployment",
            &env.namespace,
            &pod,
            true,
        )],
    );
    assert_eq!(mc(&env, &["status"]).await.ok(), expected);
    // -n with the same namespace is the same table; another namespace has none.
    assert_eq!(
        mc(&env, &["status", "-n", &env.namespace]).await.ok(),
        expected
    );
    assert_eq!(
        mc(&env, &["status", "-n", "kube-public"]).await.ok(),
        "No active copy targets\n"
    );
}

/// A session whose ConfigMap was deleted by hand leaves its workload at zero under a lock its
/// finalizer keeps: `status` has no session to show, and says on stderr what only gc repairs.
#[tokio::test]
async fn a_workload_left_by_a_deleted_session_is_named_until_gc() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("left", 3)).await;
    let pod = create(&env, &["deployment/left", "--scale-down"]).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), &env.namespace);
    let sessions = cms
        .list(&kube::api::ListParams::default().labels("mirrord-copy.io/role=session"))
        .await
        .unwrap();
    for cm in sessions.items {
        cms.delete(&cm.metadata.name.unwrap(), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_pod_gone(&env, &pod).await;
    let run = mc(&env, &["status"]).await;
    assert_eq!(run.ok(), "No active copy targets\n");
    run.stderr_has(&[
        "deployment/left",
        &env.namespace,
        &format!("kubectl mirrord-copy gc -n {}", env.namespace),
    ]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "left").await, 0);
    mc(&env, &["gc"]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "left").await, 3);
    let run = mc(&env, &["status"]).await;
    assert_eq!(run.ok(), "No active copy targets\n");
    assert!(!run.stderr.contains("deployment/left"), "{}", run.stderr);
}

/// Many sessions, made in a scrambled order, a mix of scale-down and not: sorted by namespace,
/// target, creation time and session id, as `status -o json` lists them too.
#[tokio::test]
async fn many_sessions_sorted() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    env.apply_yaml(&deployment("api", 1)).await;
    env.apply_yaml(&workload("StatefulSet", "db", 1)).await;
    env.apply_yaml(&workload("ReplicaSet", "cache", 1)).await;
    env.apply_yaml(&job("batch")).await;
    let made = [
        ("statefulset/db", false),
        ("deployment/web", true),
        ("job/batch", false),
        ("deployment/api", false),
        ("replicaset/cache", true),
        ("deployment/api/container/side", false),
        ("deployment/api", false),
    ];
    let mut sessions = Vec::new();
    for (target, sd) in made {
        let mut args = vec!["create", target, "-o", "json"];
        if sd {
            args.push("--scale-down");
        }
        let doc: Value = serde_json::from_str(mc(&env, &args).await.ok()).unwrap();
        sessions.push(doc);
    }
    sessions.sort_by(|a, b| {
        let key = |d: &Value| {
            (
                d["namespace"].as_str().unwrap().to_string(),
                d["target"].as_str().unwrap().to_string(),
                chrono::DateTime::parse_from_rfc3339(d["created"].as_str().unwrap()).unwrap(),
                d["session"].as_str().unwrap().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|d| {
            row(
                d["target"].as_str().unwrap(),
                &env.namespace,
                d["copyPod"].as_str().unwrap(),
                d["scaleDown"].as_bool().unwrap(),
            )
        })
        .collect();
    let targets: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        targets,
        [
            "deployment/api",
            "deployment/api",
            "deployment/api/container/side",
            "deployment/web",
            "job/batch",
            "replicaset/cache",
            "statefulset/db",
        ]
    );
    let out = mc(&env, &["status"]).await;
    assert_eq!(out.ok(), reference_table(&STATUS_HEADERS, &rows));
    let listed: Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["session"])
        .collect();
    let want: Vec<&Value> = sessions.iter().map(|d| &d["session"]).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn all_namespaces() {
    let env = TestEnv::new().await;
    let other = format!("{}-b", env.namespace);
    let nss: Api<Namespace> = Api::all(env.client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
    )
    .await
    .unwrap();
    env.apply_yaml(&deployment("web", 1)).await;
    env.apply_yaml(&deployment("web", 1).replace(
        "metadata:\n  name: web\n",
        &format!("metadata:\n  name: web\n  namespace: {other}\n"),
    ))
    .await;
    let b = create(&env, &["-n", &other, "deployment/web", "--scale-down"]).await;
    let a = create(&env, &["deployment/web"]).await;

    let here = mc(&env, &["status"]).await;
    assert_eq!(
        here.ok(),
        reference_table(
            &STATUS_HEADERS,
            &[row("deployment/web", &env.namespace, &a, false)]
        )
    );
    assert_eq!(
        mc(&env, &["status", "-n", &other]).await.ok(),
        reference_table(&STATUS_HEADERS, &[row("deployment/web", &other, &b, true)])
    );
    let mine = [
        row("deployment/web", &env.namespace, &a, false),
        row("deployment/web", &other, &b, true),
    ];
    let all = mc(&env, &["status", "-A"]).await;
    let all = all.ok();
    if env.fake().is_some() {
        assert_eq!(all, reference_table(&STATUS_HEADERS, &mine));
    } else {
        // A shared cluster may hold other sessions: ours are there, in order, and the table
        // is laid out from its own content.
        let rows: Vec<Vec<String>> = table_rows(all)
            .into_iter()
            .filter(|r| r[1] == env.namespace || r[1] == other)
            .collect();
        assert_eq!(rows, mine);
        assert_eq!(all, reference_table(&STATUS_HEADERS, &table_rows(all)));
    }
    let doc: Value =
        serde_json::from_str(mc(&env, &["status", "-A", "-o", "json"]).await.ok()).unwrap();
    let pods: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["copyPod"].as_str())
        .filter(|p| *p == a || *p == b)
        .collect();
    assert_eq!(pods, [a.as_str(), b.as_str()]);

    mc(&env, &["delete", "-n", &other, &b]).await.ok();
    assert_eq!(replicas_in(&env, &other, "web").await, 1);
    let _ = nss.delete(&other, &DeleteParams::default()).await;
}

async fn replicas_in(env: &TestEnv, ns: &str, name: &str) -> i64 {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(env.client.clone(), ns);
    api.get(name).await.unwrap().spec.unwrap().replicas.unwrap() as i64
}

#[tokio::test]
async fn wide_json_and_yaml_mark_your_sessions() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("mine", 1)).await;
    env.apply_yaml(&deployment("theirs", 1)).await;
    let mine: Value = serde_json::from_str(
        mc(
            &env,
            &["create", "deployment/mine", "--ttl", "1h", "-o", "json"],
        )
        .await
        .ok(),
    )
    .unwrap();
    // Someone else's: made on another machine (another state directory), and by another
    // Kubernetes user (its record names another owner), so by neither rule yours.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut theirs: Value = serde_json::from_str(
        mc_with(
            &env,
            &["create", "deployment/theirs", "--scale-down", "-o", "json"],
            |c| {
                c.env("MIRRORD_COPY_STATE_DIR", elsewhere.path());
            },
        )
        .await
        .ok(),
    )
    .unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), &env.namespace);
    let record = format!(
        "mirrord-copy-session-{}",
        theirs["session"].as_str().unwrap()
    );
    cms.patch(
        &record,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"owner": "teammate@example.com"}})),
    )
    .await
    .unwrap();
    theirs["owner"] = json!("teammate@example.com");

    let wide = mc(&env, &["status", "-o", "wide"]).await;
    let wide = wide.ok();
    let rows = table_rows(wide);
    assert_eq!(wide, reference_table(&WIDE_HEADERS, &rows), "layout");
    let header: Vec<String> = wide
        .lines()
        .nth(2)
        .unwrap()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    assert_eq!(header, WIDE_HEADERS);
    assert_eq!(rows.len(), 2);
    let (m, t) = (&rows[0], &rows[1]);
    assert_eq!(
        m[..4],
        row(
            "deployment/mine",
            &env.namespace,
            mine["copyPod"].as_str().unwrap(),
            false
        )[..]
    );
    assert_eq!(
        t[..4],
        row(
            "deployment/theirs",
            &env.namespace,
            theirs["copyPod"].as_str().unwrap(),
            true
        )[..]
    );
    assert_eq!(m[4], mine["owner"].as_str().unwrap());
    assert_eq!(t[4], theirs["owner"].as_str().unwrap());
    assert_eq!(m[5], mine["host"].as_str().unwrap());
    assert_eq!(t[5], theirs["host"].as_str().unwrap());
    for r in [m, t] {
        let age = r[6].strip_suffix('s').expect("age in seconds");
        assert!(age.parse::<u32>().unwrap() < 120, "{r:?}");
        assert_eq!(r[7], "Running");
        assert_eq!(r[8], "placeholder in app");
    }
    assert!(m[9] == "in 59m" || m[9] == "in 60m", "{m:?}");
    assert!(t[9] == "in 7h59m" || t[9] == "in 8h", "{t:?}");
    assert_eq!(m[10], "yes");
    assert_eq!(t[10], "");
    assert_eq!(m[11], "", "no scale-down, no counts");
    assert_eq!(t[11], "1 -> 0", "{t:?}");

    let json: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let yaml: Value =
        serde_yaml_ng::from_str(mc(&env, &["status", "-o", "yaml"]).await.ok()).unwrap();
    assert_eq!(json, yaml, "json and yaml carry the same document");
    assert_eq!(json["apiVersion"], "mirrord-copy.io/v1");
    assert_eq!(json["kind"], "CopySessionList");
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, created, yours) in [(&items[0], &mine, true), (&items[1], &theirs, false)] {
        assert_eq!(item["kind"], "CopySession");
        assert_eq!(item["yours"], yours);
        assert_eq!(item["phase"], "Running");
        for f in SESSION_DOC_FIELDS {
            assert_eq!(item[f], created[f], "{f}");
        }
    }
}

#[tokio::test]
async fn delete_by_pod_target_and_all_is_idempotent() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    env.apply_yaml(&workload("StatefulSet", "db", 1)).await;
    let p1 = create(&env, &["deployment/api"]).await;
    let p2 = create(&env, &["deployment/api/container/app"]).await;
    let p3 = create(&env, &["sts/db"]).await;
    let p4 = create(&env, &["sts/db"]).await;
    assert_eq!(state_sessions(&env).len(), 4);

    // By pod.
    let out = mc(&env, &["delete", &p3]).await;
    assert_eq!(
        out.ok(),
        format!("copy session of statefulset/db ended: pod/{p3} deleted\n")
    );
    wait_pod_gone(&env, &p3).await;
    assert_eq!(state_sessions(&env).len(), 3, "the state file forgets it");
    mc(&env, &["delete", &p3])
        .await
        .code(0)
        .stderr_has(&[&format!(
            "pod \"{p3}\" has no active copy session (already ended)"
        )]);

    // By target: every session of the workload, whatever the container.
    let out = mc(&env, &["delete", "--target", "deploy/api", "-o", "name"]).await;
    let mut names: Vec<&str> = out.ok().lines().collect();
    names.sort();
    let mut want = [format!("pod/{p1}"), format!("pod/{p2}")];
    want.sort();
    assert_eq!(names, want);
    wait_pod_gone(&env, &p1).await;
    wait_pod_gone(&env, &p2).await;
    mc(&env, &["delete", "--target", "deployment/api"])
        .await
        .code(0)
        .stderr_has(&["no active copy session for deployment/api: nothing to do"]);
    assert!(mc(&env, &["status"]).await.ok().contains(&p4));

    // All.
    let out = mc(&env, &["delete", "--all", "-o", "json"]).await;
    let doc: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(doc["kind"], "CopySessionList");
    assert_eq!(doc["items"][0]["copyPod"], p4.as_str());
    assert_eq!(doc["items"].as_array().unwrap().len(), 1);
    wait_pod_gone(&env, &p4).await;
    let again = mc(&env, &["delete", "--all"]).await;
    again
        .code(0)
        .stderr_has(&["No active copy targets: nothing to do"]);
    assert_eq!(again.stdout, "");
    assert_eq!(mc(&env, &["status"]).await.ok(), "No active copy targets\n");
    assert!(state_sessions(&env).is_empty());
    env.wait_until("sessions gone", Duration::from_secs(30), || async {
        session_config_maps(&env, &env.namespace)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Every scalable kind comes back to exactly its original count.
#[tokio::test]
async fn delete_restores_the_exact_replica_counts() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("d3", 3)).await;
    env.apply_yaml(&workload("StatefulSet", "s2", 2)).await;
    env.apply_yaml(&workload("ReplicaSet", "r4", 4)).await;
    let cases = [
        ("deployment/d3", "Deployment", "deployments", "d3", 3),
        ("statefulset/s2", "StatefulSet", "statefulsets", "s2", 2),
        ("replicaset/r4", "ReplicaSet", "replicasets", "r4", 4),
    ];
    let mut pods = Vec::new();
    for (target, kind, plural, name, _) in cases {
        pods.push(create(&env, &[target, "--scale-down"]).await);
        assert_eq!(replicas(&env, kind, plural, name).await, 0, "{target}");
        let o = env
            .get_json("apps", "v1", kind, plural, name)
            .await
            .unwrap();
        assert!(o["metadata"]["annotations"]["mirrord-copy.io/original-replicas"].is_string());
    }
    let st = mc(&env, &["status"]).await;
    assert_eq!(
        st.ok().matches("| *           |").count(),
        3,
        "{}",
        st.stdout
    );
    for ((target, kind, plural, name, count), pod) in cases.into_iter().zip(&pods) {
        let out = mc(&env, &["delete", pod]).await;
        assert_eq!(
            out.ok(),
            format!("copy session of {target} ended: pod/{pod} deleted\n")
        );
        assert_eq!(replicas(&env, kind, plural, name).await, count, "{target}");
        let o = env
            .get_json("apps", "v1", kind, plural, name)
            .await
            .unwrap();
        assert!(
            o["metadata"]["annotations"]["mirrord-copy.io/original-replicas"].is_null(),
            "{target}: {}",
            o["metadata"]
        );
        wait_pod_gone(&env, pod).await;
    }
    assert_nothing_left(&env).await;
}
