//! The application-facing authentication state shared by all connections: the user
//! directory, the caching_sha2 fast-auth cache and the RSA key pair, behind the
//! filter's [`AuthContext`] trait.

use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use shardcar_filter::protocol::auth::{self, Credentials};
use shardcar_filter::protocol::server::AuthContext;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use thiserror::Error;

/// Bits of the RSA key generated when none is configured (MySQL's default size).
const RSA_BITS: usize = 2048;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read RSA private key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("RSA private key {path} is neither PKCS#1 nor PKCS#8 PEM")]
    Parse { path: String },
}

/// Users and authentication caches for the app role.
#[derive(Debug)]
pub struct Authenticator {
    users: HashMap<String, Credentials>,
    sha2_cache: Mutex<HashSet<String>>,
    key: OnceLock<Option<RsaPrivateKey>>,
}

impl Authenticator {
    pub fn new(users: Vec<(String, Credentials)>) -> Self {
        Self {
            users: users.into_iter().collect(),
            sha2_cache: Mutex::new(HashSet::new()),
            key: OnceLock::new(),
        }
    }

    /// Loads the RSA private key from a PEM file instead of generating one.
    pub fn load_key(&self, path: &Path) -> Result<(), KeyError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let display = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: display.clone(),
            source,
        })?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|_| KeyError::Parse { path: display })?;
        let _ = self.key.set(Some(key));
        Ok(())
    }

    /// The RSA key, generated on first use when none was loaded.
    pub fn key(&self) -> Option<&RsaPrivateKey> {
        self.key
            .get_or_init(|| {
                let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS);
                if let Err(e) = &key {
                    tracing::error!(error = %e, "generating the RSA key for caching_sha2_password failed");
                }
                key.ok()
            })
            .as_ref()
    }

    /// A per-connection view implementing the filter's trait.
    pub fn context(&self) -> Context<'_> {
        Context(self)
    }
}

/// [`AuthContext`] over a shared [`Authenticator`].
#[derive(Debug)]
pub struct Context<'a>(&'a Authenticator);

impl AuthContext for Context<'_> {
    fn credentials(&self, user: &str) -> Option<Credentials> {
        self.0.users.get(user).cloned()
    }

    fn sha2_cached(&self, user: &str) -> bool {
        self.0
            .sha2_cache
            .lock()
            .map(|c| c.contains(user))
            .unwrap_or(false)
    }

    fn sha2_remember(&mut self, user: &str) {
        if let Ok(mut c) = self.0.sha2_cache.lock() {
            c.insert(user.to_string());
        }
    }

    fn rsa_public_key_pem(&mut self) -> Option<Vec<u8>> {
        let key = self.0.key()?;
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .ok()
            .map(String::into_bytes)
    }

    fn rsa_decrypt_password(&mut self, ciphertext: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
        auth::rsa_decrypt_password(self.0.key()?, ciphertext, scramble).ok()
    }
}
