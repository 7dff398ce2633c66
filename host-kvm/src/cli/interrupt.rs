//! Ctrl-C as a request to stop: [`install`] replaces SIGINT's default (ending the process at
//! once) with setting a flag, and [`interrupted`] reads it. A command that installs it asks
//! [`interrupted`] at its checks (the explorer every 1,024 edges it records, so new states,
//! at most: [`crate::explore::Bounds::stop`]), stops there, prints what it has as a partial
//! result, and ends with [`super::CliError::Interrupted`] (exit code 130).
//!
//! Only a command that asks the flag should install the handler: elsewhere Ctrl-C would be
//! ignored. `explore` and `sim` do (`sim` looks between schedules and every few thousand
//! steps inside one). A second Ctrl-C ends the process at once with 130, for when the stop
//! takes longer than the user will wait.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first Ctrl-C after [`install`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The handler is set once per process.
static INSTALL: Once = Once::new();

/// Makes Ctrl-C (SIGINT) set the flag [`interrupted`] reads instead of ending the process;
/// a second Ctrl-C ends it with exit code 130. Calling it again does nothing.
pub fn install() -> Result<(), super::CliError> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .map_err(super::CliError::Signal);
    });
    result
}

/// Whether Ctrl-C was pressed since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
