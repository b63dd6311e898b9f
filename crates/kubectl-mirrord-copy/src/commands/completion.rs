//! `completion SHELL`: a completion script on stdout.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub(crate) fn completion(shell: Shell) -> i32 {
    let mut command = Cli::command();
    // kubectl runs us as `kubectl-mirrord_copy`; completing that name is what shells can hook.
    clap_complete::generate(
        shell,
        &mut command,
        "kubectl-mirrord_copy",
        &mut std::io::stdout(),
    );
    0
}
