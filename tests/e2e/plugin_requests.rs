//! The round trips a command costs, from the fake API server's request log: a regression in
//! the count (a LIST per session, a page per 500 objects, a read before every write) fails
//! here, without timing anything (README "Benchmarks" has the figures with latency).

use fakekube::harness::TestEnv;

use crate::plugin_support::*;

/// `(verb, path after /namespaces/<ns>)` of every request since the log was cleared.
fn sequence(env: &TestEnv) -> Vec<(String, String)> {
    let fake = env.fake().expect("the fake API server");
    let ns = format!("/namespaces/{}", env.namespace);
    fake.requests()
        .iter()
        .map(|r| {
            let path = match r.path.split_once(&ns) {
                Some((_, rest)) => rest.to_string(),
                None => r.path.clone(),
            };
            (r.verb.clone(), path)
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn create_until_ready_is_five_requests() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("rt", 1)).await;
    env.fake().unwrap().request_log().clear();
    let pod = create(&env, &["deployment/rt"]).await;
    let seq = sequence(&env);
    let want: Vec<(String, String)> = [
        // Who we are (recorded as the owner).
        (
            "create",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        ),
        ("get", "/deployments/rt"),
        ("create", "/configmaps"),
        ("create", "/pods"),
        // From the POST's resourceVersion: no GET of the pod first.
        ("watch", "/pods"),
    ]
    .iter()
    .map(|(v, p)| (v.to_string(), p.to_string()))
    .collect();
    let seq: Vec<(String, String)> = seq
        .into_iter()
        .map(|(v, p)| {
            let p = p.replace("/apis/apps/v1", "").replace("/api/v1", "");
            (v, p)
        })
        .collect();
    assert_eq!(seq, want, "{pod}");
}

/// `(verb, path)` with the API prefixes dropped, for comparing with a written-out sequence.
fn short(seq: Vec<(String, String)>) -> Vec<String> {
    seq.into_iter()
        .map(|(v, p)| {
            let p = p
                .replace("/apis/apps/v1", "")
                .replace("/apis/autoscaling/v2", "")
                .replace("/apis/keda.sh/v1alpha1", "")
                .replace("/api/v1", "");
            format!("{v} {p}")
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn create_scale_down_is_nine_requests() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("sd", 2)).await;
    let warm = create(&env, &["deployment/sd"]).await;
    mc(&env, &["delete", &warm]).await.ok();
    env.fake().unwrap().request_log().clear();
    let pod = create(&env, &["deployment/sd", "--scale-down"]).await;
    assert_eq!(
        short(sequence(&env)),
        [
            "get /deployments/sd",
            "get ", // the Namespace (its guardrail)
            "list /horizontalpodautoscalers",
            "list /scaledobjects",
            "create /configmaps", // the session, recording the workload and ScaledObjects
            "create /configmaps", // the lock, with the original count and a finalizer
            "create /pods",
            "watch /pods",
            // To zero with the way back (count, session) in one write, pinned to the
            // version `resolve` read: nothing on the workload before the copy is Ready.
            "patch /deployments/sd",
        ]
    );

    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "sd").await, 2);
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn delete_with_restore_is_seven_requests() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("dl", 2)).await;
    let pod = create(&env, &["deployment/dl", "--scale-down"]).await;
    env.fake().unwrap().request_log().clear();
    mc(&env, &["delete", &pod]).await.ok();
    let session = "/configmaps/mirrord-copy-session-";
    let lock = "/configmaps/mirrord-copy-lock-deployment-dl";
    let seq: Vec<String> = short(sequence(&env))
        .into_iter()
        .map(|r| match r.find(session) {
            Some(i) => format!("{}{session}<id>", &r[..i]),
            None => r,
        })
        .collect();
    assert_eq!(
        seq,
        [
            "list /configmaps",        // the session of the pod: its whole record
            "get /deployments/dl",     // the count and our record, at one version
            "patch /deployments/dl",   // back to 2 and our record off, pinned
            &format!("patch {lock}"),  // finalizer off, if still ours (JSON patch test)
            &format!("delete {lock}"), // release, preconditioned
            "deletecollection /pods",  // the session's copies, by label
            &format!("delete {session}<id>"),
        ]
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "dl").await, 2);
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn delete_is_three_requests() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("dn", 1)).await;
    let pod = create(&env, &["deployment/dn"]).await;
    env.fake().unwrap().request_log().clear();
    mc(&env, &["delete", &pod]).await.ok();
    let seq: Vec<String> = short(sequence(&env))
        .into_iter()
        .map(|r| match r.find("/configmaps/") {
            Some(i) => r[..i].to_string() + "/configmaps/<session>",
            None => r,
        })
        .collect();
    assert_eq!(
        seq,
        [
            "list /configmaps",
            "deletecollection /pods",
            "delete /configmaps/<session>"
        ]
    );
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
}

const COPIES: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy%2Cmirrord-copy.io%2Frole%3Dcopy";
const OURS: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy";

/// "VERB PATH?QUERY" of every request the fake logged from index `from` on.
fn log_since(env: &TestEnv, from: usize) -> Vec<String> {
    env.fake().unwrap().requests()[from..]
        .iter()
        .map(|r| {
            let query = r.query.trim_start_matches(['?', '&']);
            if query.is_empty() {
                format!("{} {}", r.verb, r.path)
            } else {
                format!("{} {}?{}", r.verb, r.path, query)
            }
        })
        .collect()
}

/// The requests `args` made.
async fn requests_of(env: &TestEnv, args: &[&str]) -> Vec<String> {
    let from = env.fake().unwrap().requests().len();
    mc(env, args).await.ok();
    log_since(env, from)
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn status_and_gc_make_a_fixed_number_of_requests() {
    let env = TestEnv::new().await;
    env.fake().expect("the fake API server's request log");
    env.apply_yaml(&deployment("web", 2)).await;
    env.apply_yaml(&deployment("worker", 1)).await;
    create(&env, &["deployment/web"]).await;
    create(&env, &["deployment/worker", "--scale-down"]).await;
    let ns = &env.namespace;

    // Our ConfigMaps (sessions, and locks whose session is gone, to warn about).
    assert_eq!(
        requests_of(&env, &["status", "-A"]).await,
        [format!("list /api/v1/configmaps?{OURS}")],
        "the reference table shows no phase: no pods are listed"
    );
    assert_eq!(
        requests_of(&env, &["status"]).await,
        [format!("list /api/v1/namespaces/{ns}/configmaps?{OURS}")]
    );
    for wide in [
        &["status", "-A", "-o", "wide"][..],
        &["status", "-A", "-o", "json"],
    ] {
        assert_eq!(
            requests_of(&env, wide).await,
            [
                format!("list /api/v1/configmaps?{OURS}"),
                format!("list /api/v1/pods?{COPIES}"),
            ],
            "{wide:?}"
        );
    }

    // Nothing expired or orphaned: one LIST of our ConfigMaps (sessions and locks: a dead
    // session's lock outlives it by its finalizer, so no workload needs listing), one of
    // copy pods; no GET, no write.
    let expected_gc = [
        format!("list /api/v1/configmaps?{OURS}"),
        format!("list /api/v1/pods?{COPIES}"),
    ];
    assert_eq!(requests_of(&env, &["gc", "-A"]).await, expected_gc);
    // The same in one namespace.
    let in_ns: Vec<String> = expected_gc
        .iter()
        .map(|r| {
            let (verb, rest) = r.split_once(" /").unwrap();
            let (prefix, plural) = rest.rsplit_once('/').unwrap();
            format!("{verb} /{prefix}/namespaces/{ns}/{plural}")
        })
        .collect();
    assert_eq!(requests_of(&env, &["gc"]).await, in_ns);
}
