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
