//! Certificates: generating a CA and serving certificate (rcgen), loading and validating PEM
//! files before the server binds, and the resolver that lets a reload swap them live.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{0}: exists; pass --force to overwrite")]
    Exists(PathBuf),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A validated serving certificate and key.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Expiry of the leaf certificate, seconds since the epoch.
    pub not_after: i64,
    /// The raw file contents, to detect changes on disk.
    pub fingerprint: (Vec<u8>, Vec<u8>),
}

fn invalid(path: &Path, reason: impl Into<String>) -> CertError {
    CertError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and checks a certificate chain and its key: parseable, key matching the leaf, leaf
/// not expired. A chain with intermediates is served as given.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCert, CertError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert_path, format!("not a PEM certificate: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(cert_path, "no CERTIFICATE block in the file"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| invalid(cert_path, format!("not an X.509 certificate: {e}")))?;
    let not_after = parsed.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    if not_after <= now {
        return Err(invalid(
            cert_path,
            format!("certificate expired ({})", parsed.validity().not_after),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(key_path, format!("not a PEM private key: {e}")))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(key_path, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| {
        invalid(
            key_path,
            format!(
                "private key does not match the certificate in {}",
                cert_path.display()
            ),
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
        fingerprint: (cert_pem, key_pem),
    })
}

/// Serves whatever certificate was loaded last; a reload swaps it under the lock, so new
/// handshakes see the new pair and open connections keep theirs.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        SwappableCert {
            current: RwLock::new(key),
        }
    }

    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// PEM files of a generated CA and serving certificate.
pub struct GeneratedCerts {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// A new CA and a serving certificate for `dns_names` (IP addresses allowed), valid `days`.
pub fn generate(dns_names: &[String], days: u32) -> Result<GeneratedCerts, CertError> {
    let now = time_now();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sts-guard CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::from_secs(300);
    ca_params.not_after = now + Duration::from_secs(u64::from(days) * 2 * 86_400);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().map(String::as_str).unwrap_or("sts-guard"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(GeneratedCerts {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// File names inside a certificate directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// Writes generated certificates into `dir`; refuses to overwrite unless `force`.
pub fn write_dir(dir: &Path, certs: &GeneratedCerts, force: bool) -> Result<(), CertError> {
    let files = [
        (CA_CERT, &certs.ca_cert),
        (CA_KEY, &certs.ca_key),
        (TLS_CERT, &certs.cert),
        (TLS_KEY, &certs.key),
    ];
    if !force && let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
        return Err(CertError::Exists(dir.join(name)));
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, content) in files {
        let path = dir.join(name);
        write_private(&path, content.as_bytes(), name.ends_with(".key"))
            .map_err(|source| CertError::Write { path, source })?;
    }
    Ok(())
}

fn write_private(path: &Path, content: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)
}
