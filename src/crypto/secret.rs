use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` secret bytes: wiped on drop, `[redacted]` in `Debug`, compared in constant time.
///
/// ```
/// use sealwire::crypto::SecretBytes;
/// let k = SecretBytes::new([7u8; 32]);
/// assert_eq!(format!("{k:?}"), "SecretBytes<32>([redacted])");
/// assert!(k == SecretBytes::new([7u8; 32]));
/// ```
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

impl<const N: usize> SecretBytes<N> {
    /// Takes ownership of `bytes` (the caller should wipe its own copy if it keeps one).
    pub const fn new(bytes: [u8; N]) -> Self {
        SecretBytes(bytes)
    }

    /// Borrows the secret bytes.
    ///
    /// ```
    /// # use sealwire::crypto::SecretBytes;
    /// assert_eq!(SecretBytes::new([1u8; 4]).expose(), &[1, 1, 1, 1]);
    /// ```
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// Copies the bytes from a slice of exactly `N` bytes.
    ///
    /// ```
    /// # use sealwire::crypto::SecretBytes;
    /// assert!(SecretBytes::<2>::from_slice(&[1, 2]).is_some());
    /// assert!(SecretBytes::<2>::from_slice(&[1, 2, 3]).is_none());
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; N] = bytes.try_into().ok()?;
        Some(SecretBytes(arr))
    }

    pub(crate) fn clone_secret(&self) -> Self {
        SecretBytes(self.0)
    }
}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes<{N}>([redacted])")
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        super::ct_eq(&self.0, &other.0)
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_compares_every_byte_and_debug_is_redacted() {
        let a = SecretBytes::new([1u8; 32]);
        assert!(a == SecretBytes::new([1u8; 32]));
        for i in 0..32 {
            let mut b = [1u8; 32];
            b[i] ^= 0x80;
            assert!(a != SecretBytes::new(b), "byte {i}");
        }
        assert_eq!(alloc::format!("{a:?}"), "SecretBytes<32>([redacted])");
    }
}
