//! Shared secrets: read from a file or an environment variable with one
//! minimum length, and made from the operating system's random source (never
//! a fast non-cryptographic generator). Nonces come from here too.

use std::path::Path;

/// Shortest secret or token meridian accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {file}: {reason}")]
    File { file: String, reason: String },
    #[error("{0} is not set")]
    Env(String),
    #[error("{source_name}: use at least {MIN_SECRET_BYTES} bytes (found {len})")]
    TooShort { source_name: String, len: usize },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The secret in `file` if given, else in the environment variable `env`;
/// surrounding whitespace is not part of it.
pub fn read_secret(file: Option<&Path>, env: &str) -> Result<Vec<u8>, SecretError> {
    let (bytes, source_name) = match file {
        Some(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| SecretError::File { file: f.display().to_string(), reason: e.to_string() })?;
            (bytes, f.display().to_string())
        }
        None => (std::env::var(env).map_err(|_| SecretError::Env(env.to_string()))?.into_bytes(), env.to_string()),
    };
    let bytes = bytes.trim_ascii().to_vec();
    check_length(&source_name, bytes.len())?;
    Ok(bytes)
}

pub fn check_length(source_name: &str, len: usize) -> Result<(), SecretError> {
    if len < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort { source_name: source_name.to_string(), len });
    }
    Ok(())
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// `N` random bytes as `2 × N` hex digits.
pub fn random_hex<const N: usize>() -> Result<String, SecretError> {
    let bytes: [u8; N] = random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh secret: 32 random bytes as 64 hex digits.
pub fn random_hex_secret() -> Result<String, SecretError> {
    random_hex::<32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_wherever_they_come_from() {
        let dir = std::env::temp_dir().join(format!("meridian-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "  short\n").unwrap();
        assert!(matches!(read_secret(Some(&f), "UNUSED"), Err(SecretError::TooShort { len: 5, .. })));
        std::fs::write(&f, "0123456789abcdef\n").unwrap();
        assert_eq!(read_secret(Some(&f), "UNUSED").unwrap(), b"0123456789abcdef");
        std::env::set_var("MERIDIAN_TEST_SHORT_SECRET", "tiny");
        assert!(matches!(read_secret(None, "MERIDIAN_TEST_SHORT_SECRET"), Err(SecretError::TooShort { .. })));
        assert!(matches!(read_secret(None, "MERIDIAN_TEST_UNSET_SECRET"), Err(SecretError::Env(_))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn random_secrets_are_long_and_differ() {
        let (a, b) = (random_hex_secret().unwrap(), random_hex_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
