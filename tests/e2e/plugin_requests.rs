//! The round trips a command costs, from the fake API server's request log: a regression in
//! the count fails here (README "Benchmarks" has the figures with latency).

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
