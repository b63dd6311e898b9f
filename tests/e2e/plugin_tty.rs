//! Colour is for people: on a terminal the error prefix is coloured, never when NO_COLOR is
//! set, and never when output is piped. `script` (util-linux) gives the plugin a pseudo-terminal.

use crate::plugin_bin;

use std::process::Command;

const RED_ERROR: &str = "\x1b[31merror:";

/// Run the plugin on a pseudo-terminal; everything it wrote, as the terminal saw it.
fn on_terminal(no_color: bool) -> String {
    let cmd = format!(
        "{} --kubeconfig /nonexistent/kubeconfig status",
        plugin_bin()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c
        .output()
        .expect("`script` (util-linux) runs the plugin on a terminal: apt-get install bsdutils");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn errors_are_coloured_only_on_a_terminal_without_no_color() {
    let tty = on_terminal(false);
    assert!(tty.contains(RED_ERROR), "no colour on a terminal: {tty:?}");
    let no_color = on_terminal(true);
    assert!(
        no_color.contains("error: cluster unreachable"),
        "{no_color:?}"
    );
    assert!(
        !no_color.contains('\x1b'),
        "colour despite NO_COLOR: {no_color:?}"
    );
    let piped = Command::new(plugin_bin())
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "status"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(8));
    assert!(
        stderr.starts_with("error: ") && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
}

/// On a terminal, progress shows on stderr (finished steps as lines, a spinner on waits), and
/// stdout still carries just the pod name; piped without -v, stderr has no progress at all.
#[tokio::test]
async fn progress_shows_on_a_terminal_and_stays_off_pipes() {
    use crate::plugin_support::{deployment, mc};
    let env = fakekube::harness::TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    let cmd = format!("{} create deployment/web --scale-down", plugin_bin());
    let mut c = tokio::process::Command::from(env.command("script"));
    c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
    let out = c.output().await.expect("`script` (util-linux) runs");
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{screen}");
    // Finished steps stay on screen, each on a line of its own (indicatif starts it with a
    // line clear and pads it to the terminal's width).
    for step in [
        "\x1b[2Kresolved deployment/web to Deployment",
        "\x1b[2Kscale-down lock on deployment/web acquired",
        "\x1b[2Kcopy pod web-copy-",
        "\x1b[2Kscaled deployment/web down from 1 to 0",
    ] {
        assert!(
            screen.contains(step),
            "no {step:?} on the terminal: {screen:?}"
        );
    }
    let pods = env.list_pods("mirrord-copy.io/role=copy").await;
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        screen.contains(&format!("{pod}\r\n")),
        "the pod name is not a line of its own: {screen:?}"
    );
    mc(&env, &["delete", "--all"]).await.code(0);

    let piped = mc(&env, &["create", "deployment/web", "--scale-down"]).await;
    let pod = piped.ok();
    assert!(pod.starts_with("web-copy-"), "{pod:?}");
    assert_eq!(piped.stderr, "", "progress on a pipe without -v");
    mc(&env, &["delete", "--all"]).await.code(0);
}
