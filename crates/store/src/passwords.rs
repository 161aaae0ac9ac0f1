//! Password hashing and identity names: what every engine's identity store checks the
//! same way.

use novanet_core::{Error, Result};
use sha2::{Digest, Sha256};

/// The hash of the first versions: one salted SHA-256. Still read, so that old stores keep
/// working; replaced by Argon2id at the user's next login.
pub(crate) fn legacy_hash(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): ~20 ms per login here, so a
/// guesser gets tens of tries a second per core instead of thousands. PHC string format.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Store(format!("password salt: {e}")))?;
    let params = argon2::Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Store(format!("argon2 parameters: {e}")))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Store(format!("password hash: {e}")))
}

/// Whether `password` matches the stored hash, and whether the hash is the legacy kind.
pub(crate) fn verify_password(hash: &str, salt: &str, password: &str) -> (bool, bool) {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(h) => (
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok(),
            false,
        ),
        Err(_) => (legacy_hash(salt, password) == hash, true),
    }
}

/// An Argon2id hash of a password nobody has, checked against when the user does not exist.
pub(crate) fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("novanet: no such user").unwrap_or_default())
}

/// A project's or user's name: not blank, no control characters, at most 255 characters.
pub(crate) fn check_identity_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", format!("a {what} needs a name")));
    }
    novanet_core::valid::check_name("name", name)
}
