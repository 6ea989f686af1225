//! Tenant ids and API keys.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Longest tenant id. A PostgreSQL identifier holds 63 bytes and each tenant's schema is named
/// `tenant_<id>`, so 51 leaves room for the prefix and a short suffix.
pub const TENANT_ID_MAX_LEN: usize = 51;

/// A tenant id: a lowercase DNS label (`a-z`, `0-9`, `-`; starts and ends with a letter or digit)
/// of at most 51 characters. Once parsed it is safe to use in file names and SQL identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantIdError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is {0} characters long; the limit is 51")]
    TooLong(usize),
    #[error("tenant id may contain only lowercase letters a-z, digits and '-' (found {0:?})")]
    BadChar(char),
    #[error("tenant id must start and end with a lowercase letter or a digit")]
    BadEdge,
}

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, TenantIdError> {
        if s.is_empty() {
            return Err(TenantIdError::Empty);
        }
        let len = s.chars().count();
        if len > TENANT_ID_MAX_LEN {
            return Err(TenantIdError::TooLong(len));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(TenantIdError::BadChar(c));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(TenantIdError::BadEdge);
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Every key starts with this, so secret scanners and humans recognise one.
pub const API_KEY_PREFIX: &str = "strata_";

/// A freshly generated API key. The plaintext exists only until it is shown to the user once.
#[derive(Debug)]
pub struct NewApiKey {
    pub plaintext: Secret<String>,
    pub hash: KeyHash,
    /// The first characters after the prefix: enough to tell keys apart in a listing, far too
    /// few to guess the rest.
    pub display_prefix: String,
}

/// What a session token may be used for. A token is only ever valid for the scope it was
/// issued for: the dashboard cookie opens the two report endpoints, a gRPC session runs SQL.
/// The scope is part of what is hashed, so a token presented for another scope simply does
/// not exist there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionScope {
    /// The reports dashboard's cookie (`POST /reports/session`).
    Dashboard,
    /// A session of the SQL query service (gRPC `authenticate`).
    Sql,
}

impl SessionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionScope::Dashboard => "dashboard",
            SessionScope::Sql => "sql",
        }
    }

    /// The stored hash of `token` in this scope.
    pub fn hash(self, token: &str) -> KeyHash {
        KeyHash::of(&format!("{}:{token}", self.as_str()))
    }
}

/// SHA-256 of a key, hex encoded. Keys carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force, and authentication stays cheap on every request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push_str(&format!("{b:02x}"));
        }
        Self(hex)
    }

    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl NewApiKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let plaintext = format!("{API_KEY_PREFIX}{body}");
        let hash = KeyHash::of(&plaintext);
        let display_prefix = plaintext[..API_KEY_PREFIX.len() + 6].to_string();
        Self { plaintext: Secret::new(plaintext), hash, display_prefix }
    }
}

/// Checks the shape of a presented key before any lookup, so garbage never reaches the database.
pub fn looks_like_api_key(s: &str) -> bool {
    s.len() == API_KEY_PREFIX.len() + 43
        && s.starts_with(API_KEY_PREFIX)
        && s[API_KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_tenant_ids_are_lowercase_dns_labels() {
        for ok in ["a", "acme", "acme-corp", "t1", "0", &"a".repeat(51)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_tenant_ids_get_a_reason() {
        assert_eq!(TenantId::parse(""), Err(TenantIdError::Empty));
        assert_eq!(TenantId::parse(&"a".repeat(52)), Err(TenantIdError::TooLong(52)));
        assert_eq!(TenantId::parse("Acme"), Err(TenantIdError::BadChar('A')));
        assert_eq!(TenantId::parse("a_b"), Err(TenantIdError::BadChar('_')));
        assert_eq!(TenantId::parse("../x"), Err(TenantIdError::BadChar('.')));
        assert_eq!(TenantId::parse("a;drop"), Err(TenantIdError::BadChar(';')));
        assert_eq!(TenantId::parse("-a"), Err(TenantIdError::BadEdge));
        assert_eq!(TenantId::parse("a-"), Err(TenantIdError::BadEdge));
        assert_eq!(TenantId::parse("é"), Err(TenantIdError::BadChar('é')));
    }

    #[test]
    fn generated_keys_are_unique_and_hash_consistently() {
        let a = NewApiKey::generate();
        let b = NewApiKey::generate();
        assert_ne!(a.plaintext.expose(), b.plaintext.expose());
        assert!(looks_like_api_key(a.plaintext.expose()));
        assert_eq!(KeyHash::of(a.plaintext.expose()), a.hash);
        assert_eq!(a.hash.as_str().len(), 64);
        assert!(!format!("{a:?}").contains(&a.plaintext.expose()[10..]));
    }

    #[test]
    fn malformed_keys_are_recognised_without_a_lookup() {
        assert!(!looks_like_api_key(""));
        assert!(!looks_like_api_key("strata_short"));
        assert!(!looks_like_api_key(&format!("other__{}", "a".repeat(43))));
        assert!(!looks_like_api_key(&format!("strata_{}'", "a".repeat(42))));
    }
}
