//! TLS for the listener: the certificate and key from PEM files, reloadable without a restart,
//! and the self-signed certificate `chaperone up --tls` makes for localhost.
//!
//! Security decisions, written where they are made:
//! - rustls with the *ring* provider; TLS 1.3 and 1.2 only (rustls offers nothing older), and
//!   rustls' default cipher suites, all AEAD with forward secrecy.
//! - ALPN offers `http/1.1` only: the server speaks HTTP/1.1.
//! - A reload replaces the certificate for new handshakes; connections already established
//!   keep theirs, so nothing is dropped. A reload that fails (unreadable file, key that does
//!   not match the certificate) keeps the current certificate and reports why.
//! - The generated certificate is ECDSA P-256, valid for `localhost`, 127.0.0.1 and ::1, for two
//!   years; its key file is written with mode 0600.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Why a certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// The server's certificate, reloadable from its files.
pub struct TlsCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TlsCertificate {
    /// Loads the certificate chain (leaf first) and private key from PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let current = load_pair(cert_path, key_path)?;
        let resolver = Arc::new(Resolver(RwLock::new(current)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Generate(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the files again; new handshakes use the new certificate. On error the current
    /// certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.cert_path, &self.key_path)?;
        *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The SHA-256 fingerprint of the leaf certificate in use, as `AB:CD:...` (the form
    /// `openssl x509 -fingerprint -sha256` prints).
    pub fn fingerprint(&self) -> String {
        let current = self.resolver.current();
        current
            .cert
            .first()
            .map(|der| fingerprint(der))
            .unwrap_or_default()
    }

    /// Whether the leaf certificate in use is marked as a CA (basicConstraints `CA:TRUE`,
    /// OpenSSL's default for `req -x509`). Clients that verify as the Web PKI asks (the
    /// `chaperone` CLI, browsers) refuse such a certificate as a server's own; OpenSSL's
    /// clients accept it. The server still serves it, and says so when it loads it.
    pub fn leaf_is_ca(&self) -> bool {
        self.resolver
            .current()
            .cert
            .first()
            .is_some_and(|der| marked_ca(der))
    }

    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}

/// The colon-separated SHA-256 fingerprint of a DER certificate.
fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One DER element: its tag, its contents and what follows it. Only what certificates use:
/// one-byte tags, definite lengths of up to four bytes.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The elements inside a constructed element's contents.
fn der_children(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = der_element(contents)?;
        contents = rest;
        Some((tag, value))
    })
}

/// Whether a DER certificate carries basicConstraints with `cA` true. A certificate that
/// cannot be read so is not called a CA: this only decides a warning.
fn marked_ca(der: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT, in TBSCertificate
    const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13]; // 2.5.29.19
    let Some((SEQUENCE, certificate, _)) = der_element(der) else {
        return false;
    };
    let Some((SEQUENCE, tbs)) = der_children(certificate).next() else {
        return false;
    };
    let Some((_, extensions)) = der_children(tbs).find(|(tag, _)| *tag == EXTENSIONS) else {
        return false;
    };
    let Some((SEQUENCE, extensions)) = der_children(extensions).next() else {
        return false;
    };
    der_children(extensions)
        .filter(|(tag, _)| *tag == SEQUENCE)
        .any(|(_, extension)| {
            let mut fields = der_children(extension);
            if fields.next() != Some((0x06, BASIC_CONSTRAINTS)) {
                return false;
            }
            // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING holding the value.
            let Some((_, value)) = fields.find(|(tag, _)| *tag == 0x04) else {
                return false;
            };
            let Some((SEQUENCE, constraints, _)) = der_element(value) else {
                return false;
            };
            // cA BOOLEAN DEFAULT FALSE: present and not zero means a CA.
            matches!(der_children(constraints).next(), Some((0x01, [flag])) if *flag != 0)
        })
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let invalid = |path: &Path, message: String| TlsError::Invalid {
        path: path.to_owned(),
        message,
    };
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::Io {
        path: cert_path.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert_path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert_path, "holds no certificate".into()));
    }
    let key_pem =
        zeroize::Zeroizing::new(std::fs::read(key_path).map_err(|source| TlsError::Io {
            path: key_path.to_owned(),
            source,
        })?);
    // The error from parsing a key never quotes the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| invalid(key_path, "not a PEM private key".into()))?;
    let signer = any_supported_type(&key)
        .map_err(|e| invalid(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        invalid(
            key_path,
            format!("does not match the certificate in {}", cert_path.display()),
        )
    })?;
    Ok(Arc::new(certified))
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Makes a self-signed certificate for `localhost` (and the loopback addresses) at
/// `cert_path`/`key_path`, unless both files exist already. Returns whether it made them.
pub fn ensure_self_signed(cert_path: &Path, key_path: &Path) -> Result<bool, TlsError> {
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(generate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Chaperone (self-signed, localhost)",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(730);
    let cert = params.self_signed(&key).map_err(generate)?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write_file(key_path, key_pem.as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write as _;
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        assert!(ensure_self_signed(&cert, &key).unwrap());
        assert!(
            !ensure_self_signed(&cert, &key).unwrap(),
            "kept when present"
        );
        let tls = TlsCertificate::load(&cert, &key).unwrap();
        let first = tls.fingerprint();
        assert_eq!(first.len(), 32 * 3 - 1);

        // A new pair on disk is picked up by a reload.
        std::fs::remove_file(&cert).unwrap();
        std::fs::remove_file(&key).unwrap();
        ensure_self_signed(&cert, &key).unwrap();
        tls.reload().unwrap();
        assert_ne!(tls.fingerprint(), first);
        assert!(!tls.leaf_is_ca(), "the generated certificate is no CA");

        // A key that does not match its certificate is refused, and the current pair stays.
        let current = tls.fingerprint();
        let other = tempfile::tempdir().unwrap();
        let (cert2, key2) = (other.path().join("c"), other.path().join("k"));
        ensure_self_signed(&cert2, &key2).unwrap();
        std::fs::copy(&key2, &key).unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("does not match"), "{error}");
        assert_eq!(tls.fingerprint(), current);
        assert!(TlsCertificate::load(&cert, &key).is_err());

        // Garbage is refused with the file's name, and a key's content is never quoted.
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(
            error.contains("tls.key") && !error.contains("c2VjcmV0"),
            "{error}"
        );
    }

    #[test]
    fn a_leaf_marked_as_a_ca_is_told_apart() {
        let key = rcgen::KeyPair::generate().unwrap();
        let made = |is_ca: rcgen::IsCa| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.is_ca = is_ca;
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let ca = made(rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained));
        assert!(marked_ca(&ca));
        assert!(marked_ca(&made(rcgen::IsCa::Ca(
            rcgen::BasicConstraints::Constrained(0)
        ))));
        assert!(!marked_ca(&made(rcgen::IsCa::ExplicitNoCa)));
        assert!(!marked_ca(&made(rcgen::IsCa::NoCa)));
        // Truncated or garbage input is read as no CA, without a panic.
        for cut in 0..ca.len() {
            let _ = marked_ca(&ca[..cut]);
        }
        assert!(!marked_ca(b"not a certificate"));
        assert!(!marked_ca(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
    }
}
