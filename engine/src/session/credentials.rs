//! API credentials: from the environment or a private file. Never printed.

use std::path::{Path, PathBuf};

use crate::venue::deribit::Secret;

/// Environment variable holding the client id.
pub const ENV_CLIENT_ID: &str = "SPINWIRE_CLIENT_ID";
/// Environment variable holding the client secret.
pub const ENV_CLIENT_SECRET: &str = "SPINWIRE_CLIENT_SECRET";

/// How `public/auth` proves the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// `client_signature`: HMAC of a timestamp and nonce; the secret never crosses the wire.
    #[default]
    ClientSignature,
    /// `client_credentials`: the secret is sent (over TLS).
    ClientCredentials,
}

/// A client id and secret, the auth method and the optional `session:NAME` scope.
///
/// `Debug` shows the id but never the secret.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Client id (not secret).
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// How to authenticate.
    pub method: AuthMethod,
    /// Ask for scope `session:NAME`, so a reconnect can resume the session.
    pub session: Option<String>,
}

/// Why credentials could not be loaded. Cold path; messages never include the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file is readable by group or others: `chmod 600` it.
    #[error("credentials file {path} is readable by group or others (mode {mode:o}); run `chmod 600` on it")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file lacks `client_id` or `client_secret`, or has a malformed line.
    #[error("credentials file {path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret's value).
        what: &'static str,
    },
    /// Only one of the two environment variables is set.
    #[error("set both SPINWIRE_CLIENT_ID and SPINWIRE_CLIENT_SECRET, or neither")]
    IncompleteEnvironment,
}

impl Credentials {
    /// Credentials with the default method and no session scope.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Credentials {
        Credentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            method: AuthMethod::default(),
            session: None,
        }
    }

    /// From `SPINWIRE_CLIENT_ID` / `SPINWIRE_CLIENT_SECRET`; `Ok(None)` when neither is set.
    ///
    /// # Errors
    /// [`CredentialError::IncompleteEnvironment`] when only one is set.
    pub fn from_env() -> Result<Option<Credentials>, CredentialError> {
        Self::from_vars(
            std::env::var(ENV_CLIENT_ID).ok(),
            std::env::var(ENV_CLIENT_SECRET).ok(),
        )
    }

    /// [`from_env`](Self::from_env) on given values (testable without touching the process
    /// environment).
    ///
    /// # Errors
    /// [`CredentialError::IncompleteEnvironment`] when only one is set (or one is empty).
    pub fn from_vars(
        id: Option<String>,
        secret: Option<String>,
    ) -> Result<Option<Credentials>, CredentialError> {
        let id = id.filter(|s| !s.is_empty());
        let secret = secret.filter(|s| !s.is_empty());
        match (id, secret) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) => Ok(Some(Credentials::new(id, Secret::new(secret)))),
            _ => Err(CredentialError::IncompleteEnvironment),
        }
    }

    /// From a file of `key = value` lines (`client_id`, `client_secret`; `#` comments). The
    /// file must not be readable by group or others.
    ///
    /// # Errors
    /// [`CredentialError`]: too open, unreadable, or malformed.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialError> {
        let io = |source| CredentialError::Io {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CredentialError::TooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = Secret::new(std::fs::read_to_string(path).map_err(io)?);
        let format = |what| CredentialError::Format {
            path: path.to_owned(),
            what,
        };
        let (mut id, mut secret) = (None, None);
        for line in text.expose().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format("a line is not `key = value`"))?;
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "client_id" => id = Some(v.to_owned()),
                "client_secret" => secret = Some(Secret::new(v)),
                _ => {}
            }
        }
        Ok(Credentials::new(
            id.filter(|s| !s.is_empty())
                .ok_or_else(|| format("missing client_id"))?,
            secret
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format("missing client_secret"))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(mode: u32, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("spinwire-cred-{}-{}", std::process::id(), mode));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("creds-{}", body.len()));
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_private_file_is_read() {
        let p = write(0o600, "# x\nclient_id = abc\nclient_secret = \"s3cr3t\"\n");
        let c = Credentials::from_file(&p).unwrap();
        assert_eq!(c.client_id, "abc");
        assert_eq!(c.client_secret.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_group_or_world_readable_file_is_refused_with_a_clear_error() {
        let p = write(0o640, "client_id = abc\nclient_secret = topsecretvalue\n");
        let e = Credentials::from_file(&p).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, CredentialError::TooOpen { mode: 0o640, .. }),
            "{msg}"
        );
        assert!(msg.contains("chmod 600"));
        assert!(!msg.contains("topsecretvalue"));
    }

    #[test]
    fn a_file_without_a_secret_is_refused() {
        let p = write(0o600, "client_id = abc\n");
        assert!(matches!(
            Credentials::from_file(&p),
            Err(CredentialError::Format { .. })
        ));
    }

    #[test]
    fn environment_needs_both_or_neither() {
        assert!(Credentials::from_vars(None, None).unwrap().is_none());
        assert!(Credentials::from_vars(Some("a".into()), Some("b".into()))
            .unwrap()
            .is_some());
        assert!(matches!(
            Credentials::from_vars(Some("a".into()), None),
            Err(CredentialError::IncompleteEnvironment)
        ));
    }
}
