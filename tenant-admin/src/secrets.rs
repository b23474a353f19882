//! Secrets at rest: database passwords (and, later, private keys) are kept
//! in the catalog encrypted under `SECRETS_KEY`, never in the clear, and
//! API tokens are kept only as SHA-256 hashes.
//!
//! Encryption is XChaCha20-Poly1305 with a random 24-byte nonce per value,
//! stored as `nonce || ciphertext`. The value's purpose is bound as
//! associated data, so a sealed DSN password cannot be replayed as another
//! kind of secret.
//!
//! A connection string is split before it is stored: the part without the
//! password (`postgres://user@host:port/db`) is kept in the clear, shown by
//! the API and safe in a log line; the password is sealed.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

const NONCE_LEN: usize = 24;

/// What a sealed value is for: bound into its ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The password of a target database's connection string.
    DsnPassword,
    /// The password of a cluster server's administrative connection string.
    AdminPassword,
    /// A certificate's private key.
    PrivateKey,
    /// An ACME account's credentials (its key included).
    AcmeAccount,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::DsnPassword => b"switchyard/dsn-password/v1",
            Self::AdminPassword => b"switchyard/admin-password/v1",
            Self::PrivateKey => b"switchyard/private-key/v1",
            Self::AcmeAccount => b"switchyard/acme-account/v1",
        }
    }
}

/// Why a secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// `SECRETS_KEY` is not 32 bytes in hex or base64.
    #[error(
        "SECRETS_KEY must be 32 random bytes written as 64 hex digits or in base64 (e.g. `openssl rand -hex 32`)"
    )]
    BadKey,
    /// A value is sealed and tenant-admin runs without `SECRETS_KEY`.
    #[error("a stored password is sealed and SECRETS_KEY is not set")]
    NoKey,
    /// The value was sealed under another key, or altered.
    #[error(
        "a stored secret cannot be decrypted: SECRETS_KEY differs from the one it was sealed with, or the value was altered"
    )]
    Undecryptable,
}

/// The key secrets are sealed under.
#[derive(Clone)]
pub struct SecretsKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Parses a key: 64 hex digits, or base64 (standard or URL-safe) of 32 bytes.
    ///
    /// # Errors
    ///
    /// [`SecretsError::BadKey`] for anything else.
    pub fn parse(text: &str) -> Result<Self, SecretsError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretsError::BadKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
                .map_err(|_| SecretsError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretsError::BadKey)?;
        Ok(Self { cipher })
    }

    /// Encrypts `plaintext` for `purpose`: `nonce || ciphertext`.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.aad(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value [`seal`](Self::seal)ed for `purpose`.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Undecryptable`] under another key, for another
    /// purpose, or when the value was altered.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| SecretsError::Undecryptable)
    }

    /// Decrypts a sealed password into text.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); a value that is not UTF-8 is undecryptable too.
    pub fn open_text(&self, purpose: Purpose, sealed: &[u8]) -> Result<String, SecretsError> {
        String::from_utf8(self.open(purpose, sealed)?).map_err(|_| SecretsError::Undecryptable)
    }
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source is available");
}

/// A new API token: `sy_` and 32 random bytes in URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    format!(
        "sy_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A PostgreSQL connection string split for storage.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `postgres://user@host:port/db?...`: no password, safe to show.
    pub public: String,
    /// The password, if the string had one.
    pub password: Option<String>,
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dsn")
            .field("public", &self.public)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Why a connection string was refused. Messages never echo the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Not a URL at all.
    #[error("is not a URL (expected postgres://user[:password]@host[:port]/database)")]
    NotUrl,
    /// Another scheme.
    #[error("must start with postgres:// or postgresql://")]
    Scheme,
    /// No host.
    #[error("has no host")]
    NoHost,
    /// No user.
    #[error("has no user name")]
    NoUser,
    /// No database name.
    #[error("has no database name (postgres://user@host:port/database)")]
    NoDatabase,
    /// Something sqlx refuses.
    #[error("is not a valid PostgreSQL connection string: {0}")]
    Invalid(String),
}

impl Dsn {
    /// Splits a connection string, checking it is a usable PostgreSQL URL
    /// naming a host, a user and a database.
    ///
    /// # Errors
    ///
    /// [`DsnError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, DsnError> {
        let mut url = url::Url::parse(text.trim()).map_err(|_| DsnError::NotUrl)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(DsnError::Scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DsnError::NoHost);
        }
        if url.username().is_empty() {
            return Err(DsnError::NoUser);
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(DsnError::NoDatabase);
        }
        let password = match url.password() {
            Some(p) => Some(
                percent_decode(p)
                    .ok_or_else(|| DsnError::Invalid("bad password encoding".into()))?,
            ),
            None => None,
        };
        url.set_password(None).map_err(|()| DsnError::NoHost)?;
        let public = url.to_string();
        PgConnectOptions::from_str(&public).map_err(|e| DsnError::Invalid(e.to_string()))?;
        Ok(Self { public, password })
    }

    /// The connection options: the public part plus the password.
    ///
    /// # Errors
    ///
    /// When the stored public part no longer parses.
    pub fn connect_options(&self) -> Result<PgConnectOptions, DsnError> {
        let options = PgConnectOptions::from_str(&self.public)
            .map_err(|e| DsnError::Invalid(e.to_string()))?;
        Ok(match &self.password {
            Some(p) => options.password(p),
            None => options,
        })
    }

    /// The same server with another database.
    ///
    /// # Errors
    ///
    /// When the public part no longer parses.
    pub fn with_database(&self, database: &str) -> Result<Self, DsnError> {
        let mut url = url::Url::parse(&self.public).map_err(|_| DsnError::NotUrl)?;
        url.set_path(&format!("/{database}"));
        Ok(Self {
            public: url.to_string(),
            password: self.password.clone(),
        })
    }

    /// Seals the password (if any) for storage.
    pub fn sealed_password(&self, key: &SecretsKey, purpose: Purpose) -> Option<Vec<u8>> {
        self.password
            .as_ref()
            .map(|p| key.seal(purpose, p.as_bytes()))
    }

    /// Rebuilds a stored DSN from its public part and sealed password.
    ///
    /// # Errors
    ///
    /// [`SecretsError::NoKey`] when a password is sealed and no key is
    /// configured; [`SecretsError::Undecryptable`] when it cannot be
    /// decrypted under `key`.
    pub fn from_stored(
        public: String,
        sealed: Option<&[u8]>,
        key: Option<&SecretsKey>,
        purpose: Purpose,
    ) -> Result<Self, SecretsError> {
        let password = match (sealed, key) {
            (None, _) => None,
            (Some(_), None) => return Err(SecretsError::NoKey),
            (Some(sealed), Some(key)) => Some(key.open_text(purpose, sealed)?),
        };
        Ok(Self { public, password })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_values_open_only_under_their_key_and_purpose() {
        let key = SecretsKey::parse(KEY).unwrap();
        let sealed = key.seal(Purpose::DsnPassword, b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open(Purpose::DsnPassword, &sealed).unwrap(), b"s3cret");
        assert_ne!(
            sealed,
            key.seal(Purpose::DsnPassword, b"s3cret"),
            "nonces repeat"
        );
        assert_eq!(
            key.open(Purpose::PrivateKey, &sealed),
            Err(SecretsError::Undecryptable)
        );
        let other = SecretsKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(
            other.open(Purpose::DsnPassword, &sealed),
            Err(SecretsError::Undecryptable)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(Purpose::DsnPassword, &altered).is_err());
        assert!(key.open(Purpose::DsnPassword, &sealed[..10]).is_err());
    }

    #[test]
    fn keys_are_32_bytes_in_hex_or_base64() {
        assert!(SecretsKey::parse(KEY).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(SecretsKey::parse(&b64).is_ok());
        for bad in ["", "short", &"ab".repeat(31), &"zz".repeat(32)] {
            assert_eq!(SecretsKey::parse(bad).unwrap_err(), SecretsError::BadKey);
        }
        assert_eq!(
            format!("{:?}", SecretsKey::parse(KEY).unwrap()),
            "SecretsKey(..)"
        );
    }

    #[test]
    fn dsn_splits_off_the_password() {
        let dsn =
            Dsn::parse("postgres://app:p%40ss@db1.internal:5433/shard1?sslmode=disable").unwrap();
        assert_eq!(
            dsn.public,
            "postgres://app@db1.internal:5433/shard1?sslmode=disable"
        );
        assert_eq!(dsn.password.as_deref(), Some("p@ss"));
        assert!(!format!("{dsn:?}").contains("p@ss"));
        let opts = dsn.connect_options().unwrap();
        assert_eq!(opts.get_database(), Some("shard1"));
        assert_eq!(opts.get_port(), 5433);
        let other = dsn.with_database("t_acme").unwrap();
        assert_eq!(
            other.public,
            "postgres://app@db1.internal:5433/t_acme?sslmode=disable"
        );

        assert_eq!(Dsn::parse("mysql://a@b/c"), Err(DsnError::Scheme));
        assert_eq!(Dsn::parse("not a url"), Err(DsnError::NotUrl));
        assert_eq!(Dsn::parse("postgres://app@host"), Err(DsnError::NoDatabase));
        assert_eq!(Dsn::parse("postgres://host/db"), Err(DsnError::NoUser));
        let err = Dsn::parse("postgres://app:hunter2@/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert!(a.starts_with("sy_") && a.len() > 40);
        assert_ne!(a, new_token());
        assert_eq!(token_hash(&a).len(), 32);
        assert_eq!(token_hash(&a), token_hash(&a));
    }
}
