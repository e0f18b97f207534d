//! Authentication plugins: password hashes as stored by the sidecar, and the scrambles of
//! `mysql_native_password` and `caching_sha2_password` for both sides of a handshake.
//!
//! The sidecar never keeps plain-text application passwords: it stores
//! `SHA1(SHA1(password))` (the `*HEX` form in `mysql.user`) for the native plugin and
//! `SHA256(SHA256(password))` for caching_sha2, which is all either plugin needs to
//! verify a scramble.

use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use thiserror::Error;

/// Length of the scramble (nonce) sent in the greeting.
pub const SCRAMBLE_LEN: usize = 20;

/// An authentication plugin the sidecar speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthPlugin {
    NativePassword,
    CachingSha2Password,
    ClearPassword,
}

impl AuthPlugin {
    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::NativePassword => "mysql_native_password",
            AuthPlugin::CachingSha2Password => "caching_sha2_password",
            AuthPlugin::ClearPassword => "mysql_clear_password",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"mysql_native_password" => Some(AuthPlugin::NativePassword),
            b"caching_sha2_password" => Some(AuthPlugin::CachingSha2Password),
            b"mysql_clear_password" => Some(AuthPlugin::ClearPassword),
            _ => None,
        }
    }
}

/// `caching_sha2_password` AuthMoreData status bytes.
pub mod sha2_status {
    /// Sent by the client to ask for the server's RSA public key.
    pub const REQUEST_PUBLIC_KEY: u8 = 0x02;
    /// Fast authentication succeeded; an OK follows.
    pub const FAST_AUTH_SUCCESS: u8 = 0x03;
    /// The server needs the password itself (over TLS, or RSA-encrypted).
    pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
}

/// What the sidecar stores to authenticate one application user: a hash per plugin.
/// A user without a hash for a plugin cannot log in with that plugin.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `SHA1(SHA1(password))` for `mysql_native_password`.
    pub native: Option<[u8; 20]>,
    /// `SHA256(SHA256(password))` for `caching_sha2_password`.
    pub sha2: Option<[u8; 32]>,
}

impl Credentials {
    /// Both hashes of a plain-text password (read from a mounted Secret, say); the
    /// password itself is not kept.
    pub fn from_password(password: &[u8]) -> Self {
        Self {
            native: Some(native_password_hash(password)),
            sha2: Some(sha2_password_hash(password)),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("native", &self.native.map(|_| "<hash>"))
            .field("sha2", &self.sha2.map(|_| "<hash>"))
            .finish()
    }
}

/// `SHA1(SHA1(password))`, the stored form for `mysql_native_password`.
pub fn native_password_hash(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// `SHA256(SHA256(password))`, the stored form for `caching_sha2_password`.
pub fn sha2_password_hash(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// Formats a native hash as MySQL does: `*` and 40 upper-case hex digits.
pub fn format_native_hash(hash: &[u8; 20]) -> String {
    format!("*{}", hex::encode_upper(hash))
}

/// Parses `*HEX` (or bare hex) into a native hash.
pub fn parse_native_hash(s: &str) -> Option<[u8; 20]> {
    let hex_part = s.strip_prefix('*').unwrap_or(s);
    let mut out = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Parses a 64-digit hex caching_sha2 hash.
pub fn parse_sha2_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Which side of the double hash the nonce goes on when computing the mask.
#[derive(Clone, Copy)]
enum NonceOrder {
    /// `H(nonce + H(H(password)))`: mysql_native_password.
    First,
    /// `H(H(H(password)) + nonce)`: caching_sha2_password.
    Last,
}

/// `H(H(password) ... nonce)` mask shared by both scramble plugins.
fn mask<D: Digest>(double_hash: &[u8], nonce: &[u8], order: NonceOrder) -> Vec<u8> {
    let mut h = D::new();
    match order {
        NonceOrder::First => {
            h.update(nonce);
            h.update(double_hash);
        }
        NonceOrder::Last => {
            h.update(double_hash);
            h.update(nonce);
        }
    }
    h.finalize().to_vec()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The client's answer: `H(password) XOR mask`; empty for an empty password.
fn scramble_with<D: Digest>(password: &[u8], nonce: &[u8], order: NonceOrder) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = D::digest(password);
    let stage2 = D::digest(&stage1);
    xor(&stage1, &mask::<D>(&stage2, nonce, order))
}

/// Recovers `H(password)` from the answer and checks that hashing it gives the stored
/// double hash.
fn verify_with<D: Digest>(stored: &[u8], nonce: &[u8], response: &[u8], order: NonceOrder) -> bool {
    if response.len() != stored.len() {
        return false;
    }
    let stage1 = xor(response, &mask::<D>(stored, nonce, order));
    constant_time_eq(&D::digest(&stage1), stored)
}

/// The client's `mysql_native_password` response:
/// `SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))`. Empty for an empty password.
pub fn native_password_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    scramble_with::<Sha1>(password, scramble, NonceOrder::First)
}

/// Verifies a `mysql_native_password` response against the stored double-SHA1 hash.
pub fn verify_native_password(stored: &[u8; 20], scramble: &[u8], response: &[u8]) -> bool {
    verify_with::<Sha1>(stored, scramble, response, NonceOrder::First)
}

/// The client's `caching_sha2_password` fast-path response:
/// `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble)`.
pub fn sha2_password_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    scramble_with::<Sha256>(password, scramble, NonceOrder::Last)
}

/// Verifies a `caching_sha2_password` fast-path response against the stored
/// double-SHA256 hash.
pub fn verify_sha2_password(stored: &[u8; 32], scramble: &[u8], response: &[u8]) -> bool {
    verify_with::<Sha256>(stored, scramble, response, NonceOrder::Last)
}

/// Compares without an early exit, so timing does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RSA failures in the caching_sha2 public-key exchange.
#[derive(Debug, Error)]
pub enum RsaError {
    #[error("invalid RSA public key: {0}")]
    Key(String),
    #[error("RSA operation failed: {0}")]
    Crypto(#[from] rsa::Error),
}

/// The password bytes that are RSA-encrypted: `(password + NUL) XOR scramble` (the
/// scramble repeated as needed).
fn xor_with_scramble(password_nul: &[u8], scramble: &[u8]) -> Vec<u8> {
    if scramble.is_empty() {
        return password_nul.to_vec();
    }
    password_nul
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ scramble[i % scramble.len()])
        .collect()
}

/// Client side of the public-key exchange: encrypts the password for the server with
/// RSA-OAEP (SHA-1), as MySQL 8.0.5+ servers expect.
pub fn rsa_encrypt_password(
    public_key_pem: &[u8],
    password: &[u8],
    scramble: &[u8],
    rng: &mut (impl rand::CryptoRng + rand::RngCore),
) -> Result<Vec<u8>, RsaError> {
    use rsa::pkcs8::DecodePublicKey;
    let pem = std::str::from_utf8(public_key_pem)
        .map_err(|e| RsaError::Key(e.to_string()))?
        .trim_matches(char::from(0));
    let key = RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| {
            use rsa::pkcs1::DecodeRsaPublicKey;
            RsaPublicKey::from_pkcs1_pem(pem)
        })
        .map_err(|e| RsaError::Key(e.to_string()))?;
    let mut plain = password.to_vec();
    plain.push(0);
    let data = xor_with_scramble(&plain, scramble);
    Ok(key.encrypt(&mut RngAdapter(rng), Oaep::new::<Sha1>(), &data)?)
}

/// Server side of the public-key exchange: decrypts what the client sent and returns
/// the password without its trailing NUL.
pub fn rsa_decrypt_password(
    key: &RsaPrivateKey,
    ciphertext: &[u8],
    scramble: &[u8],
) -> Result<Vec<u8>, RsaError> {
    let data = key.decrypt(Oaep::new::<Sha1>(), ciphertext)?;
    let mut plain = xor_with_scramble(&data, scramble);
    if plain.last() == Some(&0) {
        plain.pop();
    }
    Ok(plain)
}

/// Adapts any `rand` CSPRNG to the trait bound `rsa` wants.
struct RngAdapter<'a, R>(&'a mut R);

impl<R: rand::RngCore> rand::RngCore for RngAdapter<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl<R: rand::CryptoRng> rand::CryptoRng for RngAdapter<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_mysql_password_function() {
        // SELECT PASSWORD('password') in MariaDB.
        assert_eq!(
            format_native_hash(&native_password_hash(b"password")),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        let parsed = parse_native_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert_eq!(parsed, Some(native_password_hash(b"password")));
    }

    #[test]
    fn native_scramble_verifies_and_wrong_password_does_not() {
        let scramble = b"abcdefghijklmnopqrst";
        let stored = native_password_hash(b"secret");
        let resp = native_password_scramble(b"secret", scramble);
        assert!(verify_native_password(&stored, scramble, &resp));
        let wrong = native_password_scramble(b"Secret", scramble);
        assert!(!verify_native_password(&stored, scramble, &wrong));
        assert!(!verify_native_password(&stored, scramble, &[]));
    }

    #[test]
    fn sha2_scramble_verifies_and_wrong_password_does_not() {
        let scramble = b"01234567890123456789";
        let stored = sha2_password_hash(b"secret");
        let resp = sha2_password_scramble(b"secret", scramble);
        assert!(verify_sha2_password(&stored, scramble, &resp));
        let wrong = sha2_password_scramble(b"secreT", scramble);
        assert!(!verify_sha2_password(&stored, scramble, &wrong));
    }

    #[test]
    fn rsa_exchange_round_trips() {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let mut rng = rand::thread_rng();
        let key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let scramble = b"ABCDEFGHIJKLMNOPQRST";
        let ct = rsa_encrypt_password(pem.as_bytes(), b"pa55word", scramble, &mut rng).unwrap();
        assert_eq!(
            rsa_decrypt_password(&key, &ct, scramble).unwrap(),
            b"pa55word"
        );
    }
}
