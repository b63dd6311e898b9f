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
async fn create_scale_down_is_eleven_requests() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("sd", 2)).await;
    let warm = create(&env, &["deployment/sd"]).await;
    mc(&env, &["delete", &warm]).await.ok();
    env.fake().unwrap().request_log().clear();
    let pod = create(&env, &["deployment/sd", "--scale-down"]).await;
    let lock = "/configmaps/mirrord-copy-lock-deployment-sd";
    assert_eq!(
        short(sequence(&env)),
        [
            "get /deployments/sd".to_string(),
            "get ".into(),               // the Namespace (its guardrail)
            "create /configmaps".into(), // the session, recording the workload
            "list /horizontalpodautoscalers".into(),
            "create /configmaps".into(), // the lock, with the original count
            "patch /deployments/sd".into(), // the count on the workload, pinned
            "create /pods".into(),
            "watch /pods".into(),
            format!("update {lock}"), // write-ahead scaledDown=true
            "list /scaledobjects".into(),
            "patch /deployments/sd/scale".into(), // to zero, pinned
        ]
    );
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "sd").await, 2);
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn delete_with_restore_is_fourteen_requests() {
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
    let copy = format!("delete /pods/{pod}");
    assert_eq!(
        seq,
        [
            "list /configmaps",            // the session of the pod
            &format!("get {session}<id>"), // end: the record
            "list /configmaps",            // restore: the session's locks
            &format!("update {lock}"),     // fence, from the listed lock
            "get /deployments/dl",         // the count, at one version
            "patch /deployments/dl/scale", // back to 2, pinned
            "list /scaledobjects",         // KEDA pauses of ours
            "get /deployments/dl",         // after its controller's status update
            "patch /deployments/dl",       // our annotations off, pinned
            &format!("delete {lock}"),     // release, preconditioned
            "list /pods",                  // copies of the session
            copy.as_str(),
            "list /configmaps", // locks left to the session
            &format!("delete {session}<id>"),
        ]
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "dl").await, 2);
}

const SESSIONS: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy%2Cmirrord-copy.io%2Frole%3Dsession&limit=500";
const COPIES: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy%2Cmirrord-copy.io%2Frole%3Dcopy&limit=500";
const OURS: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy&limit=500";

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

    assert_eq!(
        requests_of(&env, &["status", "-A"]).await,
        [format!("list /api/v1/configmaps?{SESSIONS}")],
        "the reference table shows no phase: no pods are listed"
    );
    assert_eq!(
        requests_of(&env, &["status"]).await,
        [format!(
            "list /api/v1/namespaces/{ns}/configmaps?{SESSIONS}"
        )]
    );
    for wide in [
        &["status", "-A", "-o", "wide"][..],
        &["status", "-A", "-o", "json"],
    ] {
        assert_eq!(
            requests_of(&env, wide).await,
            [
                format!("list /api/v1/configmaps?{SESSIONS}"),
                format!("list /api/v1/pods?{COPIES}"),
            ],
            "{wide:?}"
        );
    }

    // Nothing expired or orphaned: one LIST of our ConfigMaps (sessions and locks), one per
    // kind whose annotation could name a dead session, one of copy pods; no GET, no write.
    let expected_gc = [
        format!("list /api/v1/configmaps?{OURS}"),
        "list /apis/apps/v1/deployments?limit=500".to_string(),
        "list /apis/apps/v1/statefulsets?limit=500".to_string(),
        "list /apis/apps/v1/replicasets?limit=500".to_string(),
        "list /apis/argoproj.io/v1alpha1/rollouts?limit=500".to_string(),
        "list /apis/batch/v1/cronjobs?limit=500".to_string(),
        "list /apis/keda.sh/v1alpha1/scaledobjects?limit=500".to_string(),
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
