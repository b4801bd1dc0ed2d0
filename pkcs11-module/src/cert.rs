//! Self-signed X.509 certificates for asymmetric key versions (`generate_certs`), so that Java's
//! KeyStore, which lists a private key only beside a certificate, shows the token's keys.
//!
//! The certificate is small and fixed in shape, so it is written directly in DER: version 3, a
//! random serial, subject = issuer = `CN=<label>`, valid from an hour ago to 9999-12-31, the
//! version's SubjectPublicKeyInfo, signed by the version itself through the KMS.

use kms_core::engine::{HashAlg, SigEncoding, SignScheme};
use kms_core::model::KeySpec;
use sha2::{Digest, Sha256};

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// sha256WithRSAEncryption (1.2.840.113549.1.1.11).
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// commonName (2.5.4.3).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// A certificate and the parts PKCS#11 shows as attributes.
#[derive(Debug)]
pub struct Certificate {
    /// The whole certificate (CKA_VALUE).
    pub der: Vec<u8>,
    /// The subject (and issuer) Name (CKA_SUBJECT, CKA_ISSUER).
    pub subject: Vec<u8>,
    /// The serial number INTEGER (CKA_SERIAL_NUMBER).
    pub serial: Vec<u8>,
}

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A positive INTEGER from big-endian magnitude bytes.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        &magnitude[skip.min(magnitude.len().saturating_sub(1))..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn name(common_name: &str) -> Vec<u8> {
    let attribute = seq(&[&tlv(0x06, OID_CN), &tlv(0x0c, common_name.as_bytes())]);
    seq(&[&tlv(0x31, &attribute)])
}

/// UTCTime `YYMMDDHHMMSSZ` of a Unix time (years 1950–2049).
fn utc_time(unix_s: i64) -> Vec<u8> {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let text = format!(
        "{:02}{month:02}{day:02}{:02}{:02}{:02}Z",
        year.rem_euclid(100),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    tlv(0x17, text.as_bytes())
}

/// How the version signs its certificate, or `None` for specs without a certificate here
/// (SM2 needs SM3 with a distinguishing identifier, which the clients this serves do not use).
fn signature_algorithm(spec: KeySpec) -> Option<(Vec<u8>, SignScheme)> {
    match spec {
        KeySpec::EcP256 | KeySpec::EcP256K => Some((
            seq(&[&tlv(0x06, OID_ECDSA_SHA256)]),
            SignScheme::Ecdsa(SigEncoding::Der),
        )),
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => Some((
            seq(&[&tlv(0x06, OID_RSA_SHA256), &[0x05, 0x00]]),
            SignScheme::RsaPkcs1(Some(HashAlg::Sha256)),
        )),
        _ => None,
    }
}

/// Whether a spec gets a certificate.
pub fn has_certificate(spec: KeySpec) -> bool {
    signature_algorithm(spec).is_some()
}

/// Builds the certificate; `sign` signs a SHA-256 digest under the given scheme.
pub fn self_signed<E>(
    spec: KeySpec,
    label: &str,
    spki_der: &[u8],
    serial: [u8; 16],
    now_unix_s: i64,
    sign: impl FnOnce(SignScheme, &[u8]) -> Result<Vec<u8>, E>,
) -> Result<Option<Certificate>, E> {
    let Some((algorithm, scheme)) = signature_algorithm(spec) else {
        return Ok(None);
    };
    let mut serial = serial;
    serial[0] &= 0x7f; // positive, and never more than 16 bytes of content
    serial[0] |= 0x01; // and never with a leading zero byte
    let serial = integer(&serial);
    let subject = name(label);
    let validity = seq(&[&utc_time(now_unix_s - 3600), &tlv(0x18, b"99991231235959Z")]);
    let version = tlv(0xa0, &integer(&[2]));
    let tbs = seq(&[&version, &serial, &algorithm, &subject, &validity, &subject, spki_der]);
    let digest = Sha256::digest(&tbs);
    let signature = sign(scheme, &digest)?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    let der = seq(&[&tbs, &algorithm, &tlv(0x03, &bits)]);
    Ok(Some(Certificate { der, subject, serial }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(integer(&[0x80]), vec![0x02, 2, 0x00, 0x80]);
        assert_eq!(integer(&[0, 0, 5]), vec![0x02, 1, 5]);
        assert_eq!(integer(&[0]), vec![0x02, 1, 0]);
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), tlv(0x17, b"700101000000Z"));
        // 2026-11-24T16:30:05Z
        assert_eq!(utc_time(1_795_537_805), tlv(0x17, b"261124163005Z"));
        // 2000-02-29T23:59:59Z (a leap day)
        assert_eq!(utc_time(951_868_799), tlv(0x17, b"000229235959Z"));
    }
}
