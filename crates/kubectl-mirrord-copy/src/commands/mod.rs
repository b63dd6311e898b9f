//! One module per subcommand; each returns the process exit code or a core error.

pub(crate) mod completion;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod gc;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod version;

use mirrord_copy_core::Error;

use crate::state::{Entry, LocalState};

/// `user@host` of this machine, recorded on sessions beside the Kubernetes user.
pub(crate) fn local_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(login_name)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}

/// The account name from the password database, for shells and containers without $USER.
#[cfg(unix)]
fn login_name() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, both owned here and sized as passed;
    // `pw_name` points into `buf`, read before `buf` is dropped.
    unsafe {
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

#[cfg(not(unix))]
fn login_name() -> Option<String> {
    None
}

/// The local state file; problems with it are warnings, never failures of the command.
pub(crate) fn with_state(action: impl FnOnce(&LocalState) -> std::io::Result<()>) {
    let Some(state) = LocalState::default_location() else {
        return;
    };
    if let Err(e) = action(&state) {
        eprintln!(
            "warning: the local session cache {} could not be updated: {e}",
            state.path().display()
        );
    }
}

/// Whether this machine's state file records `session`.
pub(crate) fn recorded_here(entries: &[Entry], session: &mirrord_copy_core::Session) -> bool {
    entries
        .iter()
        .any(|e| e.id == session.id && e.namespace == session.namespace)
}

pub(crate) fn state_entries() -> Vec<Entry> {
    let mut entries = Vec::new();
    with_state(|s| {
        entries = s.entries()?;
        Ok(())
    });
    entries
}

pub(crate) fn print(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|source| Error::Io {
            context: "cannot write to stdout".into(),
            source,
        }),
    }
}
