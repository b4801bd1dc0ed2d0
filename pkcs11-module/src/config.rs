//! The module's configuration: a TOML file named by `TESSERA_PKCS11_CONFIG` (see
//! `docs/pkcs11.md`). Without the variable every setting has its default, so that
//! `pkcs11-tool --module libtessera_pkcs11.so -L` works on a machine where `tessera` works.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "TESSERA_PKCS11_CONFIG";

/// The days a destroyed token key waits in PendingDeletion unless configured (the API's longest
/// window: the safest default for a deletion nobody confirmed in a console).
pub const DEFAULT_DESTROY_PENDING_DAYS: u32 = 30;

/// The configuration file's contents.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store directory; default as for `tessera`: `$TESSERA_STORE`, else the per-user one.
    pub store: Option<PathBuf>,
    /// The KMS instance whose token the module shows.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Give each asymmetric key version a self-signed certificate object (Java's KeyStore lists
    /// only private keys that have one).
    #[serde(default)]
    pub generate_certs: bool,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Where the log goes; standard error when absent.
    pub log_file: Option<PathBuf>,
    /// The pending window, in days, of a key whose object `C_DestroyObject` destroyed.
    #[serde(default = "default_destroy_days")]
    pub destroy_pending_days: u32,
    /// Whom a session logged in with the token's user PIN acts as under the KMS's policies
    /// (a RAM ARN); default the store's account root. Public sessions act as it too, for the
    /// public-key operations they may do.
    pub principal: Option<String>,
    /// More user PINs, each acting as its own principal.
    #[serde(default)]
    pub pin_principals: Vec<PinPrincipal>,
}

/// A user PIN that logs in as a principal: `[[pin_principals]]` with `principal` (a RAM ARN)
/// and `pin_hash` (from `tessera token hash-pin`; the PIN itself is never written down).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinPrincipal {
    /// The RAM principal, e.g. `acs:ram::1234567890123456:user/alice`.
    pub principal: String,
    /// The PIN's Argon2id hash.
    pub pin_hash: String,
}

fn default_instance() -> String {
    kms_core::DEFAULT_INSTANCE_ID.to_owned()
}

fn default_log_level() -> String {
    "warn".to_owned()
}

fn default_destroy_days() -> u32 {
    DEFAULT_DESTROY_PENDING_DAYS
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: None,
            instance: default_instance(),
            generate_certs: false,
            log_level: default_log_level(),
            log_file: None,
            destroy_pending_days: DEFAULT_DESTROY_PENDING_DAYS,
            principal: None,
            pin_principals: Vec::new(),
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by the variable cannot be read.
    #[error("cannot read the configuration file {path} named by {CONFIG_ENV}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("the configuration file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where, from the TOML parser.
        message: String,
    },
    /// A value is out of range.
    #[error("the configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What.
        message: String,
    },
}

impl Config {
    /// The configuration named by `TESSERA_PKCS11_CONFIG`, or the defaults when it is unset.
    pub fn from_env() -> Result<Config, ConfigError> {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => Config::load(Path::new(&path)),
            _ => Ok(Config::default()),
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if !(7..=30).contains(&config.destroy_pending_days) {
            return Err(invalid(format!(
                "destroy_pending_days must be 7 to 30, not {}",
                config.destroy_pending_days
            )));
        }
        if !["error", "warn", "info", "debug", "trace", "off"].contains(&config.log_level.as_str()) {
            return Err(invalid(format!(
                "log_level must be one of error, warn, info, debug, trace, off; not {:?}",
                config.log_level
            )));
        }
        let principals = config.principal.iter().map(|p| ("principal", p)).chain(
            config
                .pin_principals
                .iter()
                .map(|p| ("pin_principals.principal", &p.principal)),
        );
        for (field, principal) in principals {
            if let Err(e) = kms_core::policy::Principal::parse(principal) {
                return Err(invalid(format!("{field} {principal:?} is not a RAM principal: {e}")));
            }
        }
        for p in &config.pin_principals {
            if !kms_core::is_pin_hash(&p.pin_hash) {
                return Err(invalid(format!(
                    "the pin_hash of {} is not a hash from `tessera token hash-pin`",
                    p.principal
                )));
            }
        }
        Ok(config)
    }

    /// The store directory this configuration names.
    pub fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(kms_core::default_store_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tessera.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path)
    }

    #[test]
    fn a_full_file_reads() {
        let c =
            load("store = \"/srv/tessera\"\ngenerate_certs = true\nlog_level = \"debug\"\nlog_file = \"/tmp/t.log\"\n")
                .expect("valid");
        assert_eq!(c.store.as_deref(), Some(Path::new("/srv/tessera")));
        assert!(c.generate_certs);
        assert_eq!((c.log_level.as_str(), c.destroy_pending_days), ("debug", 30));
    }

    #[test]
    fn mistakes_are_named() {
        let e = load("stor = \"/x\"\n").expect_err("unknown key");
        assert!(e.to_string().contains("stor"), "{e}");
        let e = load("generate_certs = \"yes\"\n").expect_err("wrong type");
        assert!(e.to_string().contains("generate_certs"), "{e}");
        let e = load("log_level = \"loud\"\n").expect_err("bad level");
        assert!(e.to_string().contains("loud"), "{e}");
        let e = load("destroy_pending_days = 3\n").expect_err("bad window");
        assert!(e.to_string().contains("7 to 30"), "{e}");
        let e = Config::load(Path::new("/nonexistent/tessera.toml")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/tessera.toml"), "{e}");
    }
}
