//! Where every command's failure is reported: one log line (or, before logging is set up,
//! one line on standard error), and the exit code
//! that says whose fault it was (2 for input the user can fix, 1 for anything else).

use std::process::ExitCode;

/// Input that cannot work (flags that parse but contradict each other, an event the broker
/// can never take); says why. Exits 2, like a flag clap refuses.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadInput(pub String);

/// A [`BadInput`] as an error to return.
pub(crate) fn bad_input(why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(why.into()))
}

/// Prints the error with its causes and picks the exit code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    if tracing::dispatcher::has_been_set() {
        tracing::error!("{err:#}");
    } else {
        eprintln!("error: {err:#}");
    }
    let bad_input = err
        .chain()
        .any(|e| e.is::<BadInput>() || e.is::<flowgate_demo::BadFlags>());
    if bad_input {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
