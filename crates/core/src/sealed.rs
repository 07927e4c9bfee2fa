//! Secrets at rest: ChaCha20-Poly1305 (ring) with a fresh random nonce per seal, sealed as
//! `nonce || ciphertext || tag`, and associated data naming the record a value belongs to (a sealed value
//! copied onto another record does not open).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// A 256-bit sealing key.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    pub fn from_bytes(key: &[u8; 32]) -> SealingKey {
        // A 32-byte key is always the right length for ChaCha20-Poly1305.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).unwrap_or_else(|_| unreachable!("32-byte key"));
        SealingKey(LessSafeKey::new(unbound))
    }

    /// A key written as 64 hex digits (a key file, a SecureString parameter).
    pub fn from_hex(text: &str) -> Option<SealingKey> {
        let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        Some(SealingKey::from_bytes(&bytes))
    }

    /// A key derived (HKDF-SHA256) from secret material, for a value only the holders of that material may
    /// read: `purpose` keeps keys for different uses apart.
    pub fn derive(secret: &[u8], purpose: &str) -> SealingKey {
        let info = [purpose.as_bytes()];
        let prk = Salt::new(HKDF_SHA256, b"hubrelay sealing key").extract(secret);
        let okm = prk.expand(&info, &CHACHA20_POLY1305).unwrap_or_else(|_| unreachable!("one HKDF block"));
        SealingKey(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// `None` only when the system has no randomness to give.
    pub fn seal(&self, record: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(record.as_bytes()), &mut buf)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(out)
    }

    /// `None` for a value sealed under another key or record, or altered.
    pub fn open(&self, record: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(record.as_bytes()), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

/// `N` bytes from the system's CSPRNG; `None` when it has none to give.
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_record() {
        let key = SealingKey::from_bytes(&[7; 32]);
        let sealed = key.seal("tenant-a", b"secret").unwrap();
        assert_ne!(&sealed[NONCE_LEN..NONCE_LEN + 6], b"secret");
        assert_eq!(key.open("tenant-a", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(key.open("tenant-b", &sealed), None);
        assert_eq!(SealingKey::from_bytes(&[8; 32]).open("tenant-a", &sealed), None);
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert_eq!(key.open("tenant-a", &altered), None);
        assert_eq!(key.open("tenant-a", &sealed[..5]), None);
        // A fresh nonce each time.
        assert_ne!(key.seal("tenant-a", b"secret").unwrap(), sealed);
    }

    #[test]
    fn derived_keys_depend_on_the_secret_and_the_purpose() {
        let sealed = SealingKey::derive(b"refresh-1", "access token").seal("r", b"at").unwrap();
        assert_eq!(SealingKey::derive(b"refresh-1", "access token").open("r", &sealed).as_deref(), Some(&b"at"[..]));
        assert_eq!(SealingKey::derive(b"refresh-2", "access token").open("r", &sealed), None);
        assert_eq!(SealingKey::derive(b"refresh-1", "other").open("r", &sealed), None);
    }
}
