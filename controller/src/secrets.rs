//! The values of workflows' `secret_variables`: a TOML file of the controller's own
//! (`secrets_file`, by default `secrets.toml` beside the database), never the workflow, the
//! export or the registry. Read when a booted node's agent asks for its steps, so an edit
//! takes effect at the next boot without a restart. A file others may read is refused: a
//! secret must not be readable by every account on the controller.
//!
//! ```toml
//! k3s_token = "K10...::server:..."
//! [nodes.d83add36]          # a node's own value wins
//! k3s_token = "..."
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pureboot_contract::ids::Serial;

/// What `node show`, the API and the status page print instead of a secret's value.
pub const MASK: &str = "***";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secrets file {path} may be read by others (mode {mode:o}): chmod 600 it (its values \
         are not used until then)"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("secrets file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
}

/// The secrets, as read from the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Secrets {
    shared: BTreeMap<String, String>,
    by_node: BTreeMap<String, BTreeMap<String, String>>,
}

impl Secrets {
    /// Reads `path`; a missing file is no secrets.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let read = |source| SecretsError::Read {
            path: path.into(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::default()),
            Err(e) => return Err(read(e)),
        };
        if meta.mode() & 0o077 != 0 {
            return Err(SecretsError::Readable {
                path: path.into(),
                mode: meta.mode() & 0o7777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Secrets::parse(&text).map_err(|message| SecretsError::Syntax {
            path: path.into(),
            message,
        })
    }

    /// The file's text. Errors never quote a value.
    pub fn parse(text: &str) -> Result<Secrets, String> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("not TOML: {}", e.message()))?;
        let mut out = Secrets::default();
        for (key, value) in table {
            match value {
                toml::Value::String(v) => {
                    out.shared.insert(key, v);
                }
                toml::Value::Table(nodes) if key == "nodes" => {
                    for (serial, values) in nodes {
                        let serial =
                            Serial::parse(&serial).map_err(|e| format!("[nodes.{serial}]: {e}"))?;
                        let toml::Value::Table(values) = values else {
                            return Err(format!("nodes.{serial} must be a table"));
                        };
                        let mut mine = BTreeMap::new();
                        for (k, v) in values {
                            let toml::Value::String(v) = v else {
                                return Err(format!("nodes.{serial}.{k} must be a string"));
                            };
                            mine.insert(k, v);
                        }
                        out.by_node.insert(serial.to_string(), mine);
                    }
                }
                _ => return Err(format!("{key} must be a string (or the [nodes] table)")),
            }
        }
        Ok(out)
    }

    /// The value of `name` for `serial`: its own, else the shared one.
    pub fn get(&self, serial: &Serial, name: &str) -> Option<&str> {
        self.by_node
            .get(serial.as_str())
            .and_then(|m| m.get(name))
            .or_else(|| self.shared.get(name))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn node_values_win_and_others_may_not_read_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        assert_eq!(Secrets::load(&path).unwrap(), Secrets::default());
        std::fs::write(
            &path,
            "k3s_token = \"shared-s3cret\"\n[nodes.d83add36]\nk3s_token = \"own-s3cret\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secrets::load(&path).unwrap();
        let own = Serial::parse("d83add36").unwrap();
        let other = Serial::parse("00000001").unwrap();
        assert_eq!(s.get(&own, "k3s_token"), Some("own-s3cret"));
        assert_eq!(s.get(&other, "k3s_token"), Some("shared-s3cret"));
        assert_eq!(s.get(&other, "nope"), None);
    }

    #[test]
    fn errors_never_quote_a_value() {
        for text in [
            "a = 1\n",
            "a = \"s3cret\"\nnodes = 1\n",
            "[nodes.xyz]\na = \"s3cret\"\n",
        ] {
            let e = Secrets::parse(text).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
