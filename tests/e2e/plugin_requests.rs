//! The exact requests `status -A` and `gc -A` make, read from the fake's request log (issue
//! 11): a regression in their number (a LIST per session, a page per 500 objects, the copy pods
//! listed for a table that shows no phase) fails here, without timing anything.

use fakekube::harness::TestEnv;

use crate::plugin_support::*;

const SESSIONS: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy%2Cmirrord-copy.io%2Frole%3Dsession";
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
async fn status_and_gc_make_a_fixed_number_of_requests() {
    let env = TestEnv::new().await;
    if env.fake().is_none() {
        return;
    }
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
        "list /apis/apps/v1/deployments".to_string(),
        "list /apis/apps/v1/statefulsets".to_string(),
        "list /apis/apps/v1/replicasets".to_string(),
        "list /apis/argoproj.io/v1alpha1/rollouts".to_string(),
        "list /apis/batch/v1/cronjobs".to_string(),
        "list /apis/keda.sh/v1alpha1/scaledobjects".to_string(),
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
