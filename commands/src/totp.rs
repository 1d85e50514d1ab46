//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), so the
//! console can show the current code of a credential's TOTP secret.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds each code lasts.
pub const STEP: i64 = 30;

/// Reads a TOTP secret as authenticator apps are given it: base32 (RFC 4648; case, spaces,
/// dashes and `=` padding ignored) or an `otpauth://totp/...?secret=...` URI. Returns the
/// secret in canonical base32 (upper case, no padding), or a message for the form.
pub fn parse_secret(text: &str) -> Result<String, &'static str> {
    let text = text.trim();
    let raw = if let Some(query) = text
        .strip_prefix("otpauth://totp/")
        .and_then(|rest| rest.split_once('?').map(|(_, q)| q))
    {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("secret="))
            .ok_or("the otpauth URI has no secret")?
    } else {
        text
    };
    let canonical: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '='))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes =
        decode_base32(&canonical).ok_or("must be a base32 secret (letters A-Z and digits 2-7)")?;
    if bytes.len() < 10 {
        return Err("is too short for a TOTP secret (at least 16 base32 characters)");
    }
    if bytes.len() > 128 {
        return Err("is too long for a TOTP secret");
    }
    Ok(canonical)
}

fn decode_base32(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    (!text.is_empty()).then_some(out)
}

/// The code for `secret` (canonical base32) at Unix time `unix_seconds`, and the seconds it
/// stays valid.
pub fn code_at(secret: &str, unix_seconds: i64) -> Option<(String, i64)> {
    let key = decode_base32(secret)?;
    let counter = unix_seconds.div_euclid(STEP) as u64;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some((
        format!("{:06}", binary % 1_000_000),
        STEP - unix_seconds.rem_euclid(STEP),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits there; the last 6 here), with the RFC's
    /// ASCII key "12345678901234567890" in base32.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(secret, time).unwrap().0, code, "at {time}");
        }
        assert_eq!(code_at(secret, 59).unwrap().1, 1);
        assert_eq!(code_at(secret, 60).unwrap().1, 30);
    }

    #[test]
    fn secrets_are_read_as_apps_give_them() {
        assert_eq!(
            parse_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(
            parse_secret("otpauth://totp/ACME:ann?secret=JBSWY3DPEHPK3PXP&issuer=ACME").unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
        assert!(parse_secret("not base32!").is_err());
        assert!(parse_secret("JBSW").is_err(), "too short");
        assert!(parse_secret("otpauth://totp/x?issuer=y").is_err());
    }
}
