//! Credentials in the config: the server's shared `token`, its per-client
//! `clients` entries (an id, the client's own token, its own allow-list and
//! limit), the client's `id`, and `token_file` wherever a token may be
//! written, so secrets can stay out of the config file.
//!
//! A token file holds the token and at most one trailing newline (what
//! `echo` and editors leave); an empty file is an error naming it. A file
//! that group or others may read is loaded, with a warning naming the file
//! and the fix (`chmod 600`). Relative paths are relative to the config
//! file's directory, like every other path in a config.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Locator, MAX_SERVICES, Secret};
use crate::protocol::{MAX_ID_LEN, valid_name};

/// Most `clients` entries a server config may list: each is a label value
/// of the per-client metric and a row the handshake may look up, so the
/// bound keeps both small. Plenty for one server's fleet.
pub const MAX_CLIENTS: usize = 1024;
/// Largest token file read (bytes): a token is a line, not a document; a
/// path pointing at a big file by mistake is refused before it is read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// One `clients` entry as written:
/// `(id: "laptop", token_file: "laptop.key", allow_ports: [(10000, 10099)], max_services: 4)`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub id: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Absent: the server's `allow_ports`.
    #[serde(default)]
    pub allow_ports: Option<Vec<(u16, u16)>>,
    /// Absent: the server's `max_services_per_client`.
    #[serde(default)]
    pub max_services: Option<usize>,
}

/// A validated `clients` entry: the token read, the defaults resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCredentials {
    pub id: String,
    pub token: Secret,
    pub allow_ports: Vec<RangeInclusive<u16>>,
    pub max_services: usize,
}

impl ClientCredentials {
    /// Whether this client may bind `port` (never 0, as with the server's).
    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.iter().any(|range| range.contains(&port))
    }
}

/// The token given as `token` or as `token_file` at `prefix` (`""` for the
/// top level, `"clients[2]."` in an entry): `None` when neither is given,
/// an error when both are, or the file cannot be used.
pub(super) fn token_or_file(
    at: &Locator,
    prefix: &str,
    token: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let token_path = format!("{prefix}token");
    let file_path = format!("{prefix}token_file");
    match (token, file) {
        (Some(_), Some(_)) => Err(at.error(
            &[&file_path, &token_path],
            format!("{token_path} and {file_path} are both given; keep one"),
        )),
        (Some(token), None) => Ok(Some(token)),
        (None, Some(file)) => read_token_file(at, &file_path, file).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a token file (see the module docs), placing errors at `field`.
fn read_token_file(at: &Locator, field: &str, file: &Path) -> Result<Secret, ConfigError> {
    let path = at.resolve(file);
    let shown = path.display();
    let fail = |what: String| at.error(&[field], format!("{field} {shown}: {what}"));
    let meta = std::fs::metadata(&path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        let msg = format!(
            "is not a token: {} bytes (a token file holds at most {MAX_TOKEN_FILE_BYTES})",
            meta.len()
        );
        return Err(fail(msg));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    let token = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if token.is_empty() {
        return Err(fail(
            "the file is empty; write the token into it".to_owned(),
        ));
    }
    if let Some(warning) = permission_warning(&path, mode(&meta)) {
        tracing::warn!("{warning}");
    }
    Ok(Secret::new(token))
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
}

#[cfg(not(unix))]
fn mode(_: &std::fs::Metadata) -> u32 {
    0o600
}

/// The warning for a token file whose mode lets group or others in, if it does.
pub fn permission_warning(path: &Path, mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "token file {} is readable by others (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

/// Checks an id (`field` names it for the error): 1..=64 characters of
/// `[A-Za-z0-9_.-]`, what the handshake's `Hello` carries.
pub(super) fn check_id(at: &Locator, field: &str, id: &str) -> Result<(), ConfigError> {
    if valid_name(id) {
        return Ok(());
    }
    let msg = format!(
        "{field} {id:?} is invalid: use 1 to {MAX_ID_LEN} characters from A-Z, a-z, 0-9, '_', '.', '-'"
    );
    Err(at.error(&[field], msg))
}

/// The client's token (from `token` or `token_file`) and a valid `id`.
pub(super) fn client_token(
    at: &Locator,
    config: &super::ClientConfig,
) -> Result<Secret, ConfigError> {
    if let Some(id) = &config.id {
        check_id(at, "id", id)?;
    }
    let token = token_or_file(at, "", config.token.clone(), config.token_file.as_deref())?;
    match token.filter(|t| !t.expose().is_empty()) {
        Some(token) => Ok(token),
        None => {
            let which = match &config.id {
                Some(_) => "this client's own token from the server's clients entry",
                None => "the shared secret the server uses",
            };
            let msg = format!("token is empty: set {which} (or PORTHOLE_TOKEN, or token_file)");
            Err(at.error(&["token", "token_file", ""], msg))
        }
    }
}

/// Validates the `clients` entries: ids valid and unique, one token each,
/// allow-lists and limits in range (absent ones are the server's).
pub(super) fn clients(
    at: &Locator,
    entries: Vec<ClientEntry>,
    allow_ports: &[RangeInclusive<u16>],
    max_services: usize,
) -> Result<Vec<ClientCredentials>, ConfigError> {
    if entries.len() > MAX_CLIENTS {
        let msg = format!(
            "{} clients listed, at most {MAX_CLIENTS} are allowed",
            entries.len()
        );
        return Err(at.error(&["clients"], msg));
    }
    let mut out: Vec<ClientCredentials> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let prefix = format!("clients[{i}].");
        let id_path = format!("{prefix}id");
        check_id(at, &id_path, &entry.id)?;
        if let Some(first) = out.iter().position(|c| c.id == entry.id) {
            let msg = format!(
                "client id {:?} is listed twice (clients {} and {}); give each client its own id",
                entry.id,
                first + 1,
                i + 1
            );
            return Err(at.error(&[&id_path], msg));
        }
        out.push(client(at, &prefix, entry, allow_ports, max_services)?);
    }
    Ok(out)
}

fn client(
    at: &Locator,
    prefix: &str,
    entry: ClientEntry,
    allow_ports: &[RangeInclusive<u16>],
    max_services: usize,
) -> Result<ClientCredentials, ConfigError> {
    let token = token_or_file(at, prefix, entry.token, entry.token_file.as_deref())?;
    let token = match token.filter(|t| !t.expose().is_empty()) {
        Some(token) => token,
        None => {
            let msg = format!(
                "client {:?} has no token: give token or token_file (its own secret, not the shared token)",
                entry.id
            );
            return Err(at.error(
                &[&format!("{prefix}token"), prefix.trim_end_matches('.')],
                msg,
            ));
        }
    };
    let allow_ports = match &entry.allow_ports {
        Some(ranges) => super::validate::port_ranges(at, &format!("{prefix}allow_ports"), ranges)?,
        None => allow_ports.to_vec(),
    };
    let max_services = entry.max_services.unwrap_or(max_services);
    if !(1..=MAX_SERVICES).contains(&max_services) {
        let field = format!("{prefix}max_services");
        let msg = format!("{field} {max_services} is out of range; use 1 to {MAX_SERVICES}");
        return Err(at.error(&[&field], msg));
    }
    Ok(ClientCredentials {
        id: entry.id,
        token,
        allow_ports,
        max_services,
    })
}

#[cfg(test)]
mod tests;
