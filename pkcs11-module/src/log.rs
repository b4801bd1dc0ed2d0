//! The module's log: `tracing` to the configured file (or standard error), at the configured
//! level. Started once per process; a later C_Initialize keeps the first configuration's log.
//! Nothing logged carries PINs, key material or data.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

use crate::config::Config;

static STARTED: Once = Once::new();

/// Starts the log (first call only).
pub fn start(config: &Config) {
    STARTED.call_once(|| {
        let filter = EnvFilter::new(format!("tessera_pkcs11={0},kms_core={0}", config.log_level));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(false);
        let opened = config.log_file.as_ref().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| (path.clone(), e))
        });
        let result = match opened {
            Some(Ok(file)) => builder.with_writer(std::sync::Mutex::new(file)).try_init(),
            Some(Err((path, e))) => {
                eprintln!(
                    "tessera-pkcs11: cannot open the log file {}: {e}; logging to stderr",
                    path.display()
                );
                builder.with_writer(std::io::stderr).try_init()
            }
            None => builder.with_writer(std::io::stderr).try_init(),
        };
        // Another subscriber in this process (a Rust host linking the rlib) keeps its own.
        let _ = result;
    });
}
