//! Mutual TLS: with `--client-ca`, only a client whose certificate chains to that CA — and,
//! with `--client-name`, names one of those identities in its common name or DNS names — gets
//! past the handshake, so a pod that reaches the webhook port gets no AdmissionReview.
//! kube-apiserver presents such a certificate when its admission control config gives the
//! webhook's host a `kubeConfigFile` user with one (README, "Mutual TLS").
//!
//! The CA file is re-read like the serving pair: the verifier is swapped under a lock, so new
//! handshakes use the new CA and a bad file keeps the last good one.

use super::certs::CertError;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A CA bundle read and turned into a verifier.
pub struct LoadedClientCa {
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The raw file contents, to detect changes on disk.
    pub fingerprint: Vec<u8>,
}

/// Reads the PEM bundle at `path` (one or more CA certificates) into a client verifier.
pub fn load_client_ca(path: &Path, provider: &CryptoProvider) -> Result<LoadedClientCa, CertError> {
    let invalid = |reason: String| CertError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("no CERTIFICATE block in the file".into()));
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider.clone()))
            .build()
            .map_err(|e| invalid(format!("cannot verify clients with it: {e}")))?;
    Ok(LoadedClientCa {
        verifier,
        fingerprint: pem,
    })
}

/// Requires a client certificate from the current CA, of one of `names` when any are given.
#[derive(Debug)]
pub struct ClientAuth {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    names: Vec<String>,
}

impl ClientAuth {
    pub fn new(verifier: Arc<dyn ClientCertVerifier>, names: Vec<String>) -> Self {
        ClientAuth {
            current: RwLock::new(verifier),
            names,
        }
    }

    pub fn swap(&self, verifier: Arc<dyn ClientCertVerifier>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = verifier;
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the certificate names one of the accepted identities (any, when none is set).
    fn names_an_accepted_identity(&self, cert: &CertificateDer<'_>) -> bool {
        if self.names.is_empty() {
            return true;
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
            return false;
        };
        let common_names = parsed
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string));
        let dns_names = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|san| san.value.general_names.iter())
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            });
        common_names
            .chain(dns_names)
            .any(|name| self.names.contains(&name))
    }
}

impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: Go's TLS client (kube-apiserver) sends its one certificate without them, and
    /// the hints would have to be borrowed from a verifier a reload may replace.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .current()
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.names_an_accepted_identity(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Whether a failed handshake was refused for its client certificate (or the lack of one).
pub fn refused_client_certificate(err: &std::io::Error) -> bool {
    matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_))
    )
}
