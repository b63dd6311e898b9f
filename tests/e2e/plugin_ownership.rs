//! Whose sessions are whose, and what this machine remembers of them: one rule for
//! "yours" in `status` and `delete --all`; `delete POD` of a session deleted by hand names the
//! gc that repairs it; the local state file forgets sessions that ended elsewhere.

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::plugin_support::*;

/// The session ConfigMap of `pod`, by name.
async fn session_of(env: &TestEnv, pod: &str) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    cms.list(&ListParams::default().labels("mirrord-copy.io/role=session"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| {
            c.data
                .as_ref()
                .is_some_and(|d| d.get("copyPod").map(String::as_str) == Some(pod))
        })
        .and_then(|c| c.metadata.name)
        .unwrap_or_else(|| panic!("no session ConfigMap for {pod}"))
}

#[tokio::test]
async fn status_and_delete_all_agree_on_what_is_yours() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("made-here", 1)).await;
    env.apply_yaml(&deployment("someone", 1)).await;
    // Made with these credentials, but recorded in another machine's state file.
    let laptop = tempfile::tempdir().unwrap();
    let on_laptop = |c: &mut tokio::process::Command| {
        c.env("MIRRORD_COPY_STATE_DIR", laptop.path());
    };
    let mine = mc_with(&env, &["create", "deployment/made-here"], on_laptop).await;
    let mine = mine.ok().trim().to_string();
    // Made by somebody else: its record names another owner.
    let theirs = create(&env, &["deployment/someone"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    cms.patch(
        &session_of(&env, &theirs).await,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"owner": "someone-else@example.com"}})),
    )
    .await
    .unwrap();
    // From a third machine that recorded neither: only the owner decides.
    let desk = tempfile::tempdir().unwrap();
    let at_desk = |c: &mut tokio::process::Command| {
        c.env("MIRRORD_COPY_STATE_DIR", desk.path());
    };
    let doc: Value =
        serde_json::from_str(mc_with(&env, &["status", "-o", "json"], at_desk).await.ok()).unwrap();
    let yours = |pod: &str| {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["copyPod"] == pod)
            .unwrap_or_else(|| panic!("{pod} in {doc}"))["yours"]
            .clone()
    };
    assert_eq!(yours(&mine), json!(true), "made by your Kubernetes user");
    assert_eq!(yours(&theirs), json!(false), "another owner's");
    let wide = mc_with(&env, &["status", "-o", "wide"], at_desk).await;
    let rows = table_rows(wide.ok());
    let yours_column: Vec<(String, String)> =
        rows.iter().map(|r| (r[2].clone(), r[10].clone())).collect();
    assert!(
        yours_column.contains(&(mine.clone(), "yes".into())),
        "{rows:?}"
    );
    assert!(
        yours_column.contains(&(theirs.clone(), String::new())),
        "{rows:?}"
    );

    // delete --all from there ends exactly what status called yours.
    let run = mc_with(&env, &["delete", "--all"], at_desk).await;
    assert!(run.ok().contains(&mine), "{}", run.stdout);
    assert!(!run.stdout.contains(&theirs), "{}", run.stdout);
    run.stderr_has(&["skipped 1 session(s) of other owners", &theirs]);
    wait_pod_gone(&env, &mine).await;
    assert!(env.get_pod(&theirs).await.is_some());
    mc(&env, &["delete", &theirs]).await.ok();
}

#[tokio::test]
async fn delete_of_a_pod_whose_session_was_deleted_by_hand_names_gc() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("held", 3)).await;
    let pod = create(&env, &["deployment/held", "--scale-down"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    cms.delete(&session_of(&env, &pod).await, &DeleteParams::default())
        .await
        .unwrap();
    wait_pod_gone(&env, &pod).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "held").await, 0);

    let run = mc(&env, &["delete", &pod]).await;
    assert_eq!(run.ok(), "", "nothing was ended");
    run.stderr_has(&[
        &format!("pod \"{pod}\" has no copy session"),
        "its scale-down lock still holds deployment/held",
        &format!("`kubectl mirrord-copy gc -n {}`", env.namespace),
    ]);
    assert!(!run.stderr.contains("already ended"), "{}", run.stderr);
    // Exactly what gc then repairs.
    assert_eq!(replicas(&env, "Deployment", "deployments", "held").await, 0);
    mc(&env, &["gc"]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "held").await, 3);
    // Once repaired, a pod without a session is plainly ended.
    let run = mc(&env, &["delete", &pod]).await;
    run.ok();
    run.stderr_has(&["already ended"]);
    assert!(!run.stderr.contains("gc -n"), "{}", run.stderr);
}

/// Rewrites the local state file: every entry's `created` moved an hour back, as a session
/// made earlier would be recorded.
fn age_state(env: &TestEnv) {
    let path = env.state_dir.join("sessions.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let earlier = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for e in state["sessions"].as_array_mut().unwrap() {
        e["created"] = json!(earlier);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
}

fn state_pods(env: &TestEnv) -> Vec<String> {
    let mut pods: Vec<String> = state_sessions(env)
        .iter()
        .map(|e| e["copyPod"].as_str().unwrap().to_string())
        .collect();
    pods.sort();
    pods
}

#[tokio::test]
async fn the_local_state_forgets_sessions_that_ended_elsewhere() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("kept", 1)).await;
    env.apply_yaml(&deployment("ended-elsewhere", 1)).await;
    env.apply_yaml(&deployment("ended-by-hand", 1)).await;
    let kept = create(&env, &["deployment/kept"]).await;
    let elsewhere = create(&env, &["deployment/ended-elsewhere"]).await;
    let by_hand = create(&env, &["deployment/ended-by-hand"]).await;
    age_state(&env);
    let mut all = vec![kept.clone(), elsewhere.clone(), by_hand.clone()];
    all.sort();
    assert_eq!(state_pods(&env), all);

    // Another machine ends one (its state file is another), and a person deletes another
    // session's record by hand: this machine's state file still lists both.
    let other = tempfile::tempdir().unwrap();
    mc_with(&env, &["delete", &elsewhere], |c| {
        c.env("MIRRORD_COPY_STATE_DIR", other.path());
    })
    .await
    .ok();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    cms.delete(&session_of(&env, &by_hand).await, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(state_pods(&env).len(), 3);

    // status learns they are gone, and the state file forgets them.
    mc(&env, &["status"]).await.ok();
    assert_eq!(state_pods(&env), vec![kept.clone()]);

    // A session just made is kept even when a listing may have missed it; an entry of
    // another context is never touched.
    let path = env.state_dir.join("sessions.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut foreign = state["sessions"][0].clone();
    foreign["context"] = json!("some-other-cluster");
    foreign["id"] = json!("zzzzzzzzzz");
    foreign["created"] = json!("2026-01-01T00:00:00Z");
    let mut fresh = state["sessions"][0].clone();
    fresh["id"] = json!("yyyyyyyyyy");
    fresh["copyPod"] = json!("fresh-copy-aaaaa");
    fresh["created"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    state["sessions"]
        .as_array_mut()
        .unwrap()
        .extend([foreign, fresh]);
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    mc(&env, &["delete", "--all"]).await.ok();
    wait_pod_gone(&env, &kept).await;
    let ids: Vec<String> = state_sessions(&env)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["zzzzzzzzzz", "yyyyyyyyyy"]);
}
