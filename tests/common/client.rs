//! A TLS test client that verifies the server against a CA and speaks the HTTP version
//! chosen by ALPN, plus helpers to start the real server on 127.0.0.1:0.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub const BOTH: [Proto; 2] = [Proto::Http1, Proto::Http2];

    fn alpn(self) -> Vec<u8> {
        match self {
            Proto::Http1 => b"http/1.1".to_vec(),
            Proto::Http2 => b"h2".to_vec(),
        }
    }
}

pub fn client_config(ca_pem: &[u8], proto: Proto) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![proto.alpn()];
    config
}

/// A client configuration that also presents `identity` (certificate chain and key, PEM).
pub fn client_config_with_identity(
    ca_pem: &[u8],
    proto: Proto,
    identity: &ClientIdentity,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert.as_bytes())
            .map(Result::unwrap)
            .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![proto.alpn()];
    config
}

/// A client certificate and its key (PEM).
pub struct ClientIdentity {
    pub cert: String,
    pub key: String,
}

/// A CA that issues client certificates.
pub struct ClientCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl ClientCa {
    pub fn new(name: &str) -> ClientCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        ClientCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate with common name `name`.
    pub fn issue(&self, name: &str) -> ClientIdentity {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientIdentity {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Opens a TLS connection to `localhost` at `addr` presenting `identity`, and speaks HTTP
/// over it; the handshake error when the server refuses the certificate.
pub async fn connect_as(
    addr: SocketAddr,
    ca_pem: &[u8],
    proto: Proto,
    identity: &ClientIdentity,
) -> std::io::Result<Conn> {
    let connector = TlsConnector::from(Arc::new(client_config_with_identity(
        ca_pem, proto, identity,
    )));
    let tls = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(addr).await?,
        )
        .await?;
    Conn::handshake(tls, proto).await
}

/// Opens a verified TLS connection to `localhost` at `addr`.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
    proto: Proto,
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_over(TcpStream::connect(addr).await?, ca_pem, proto).await
}

/// TLS to `localhost` over an already connected socket.
pub async fn tls_over(
    tcp: TcpStream,
    ca_pem: &[u8],
    proto: Proto,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(Arc::new(client_config(ca_pem, proto)));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated, Some(proto.alpn()), "ALPN");
    Ok(tls)
}

/// One HTTP connection that can carry several requests.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub async fn open(addr: SocketAddr, ca_pem: &[u8], proto: Proto) -> std::io::Result<Conn> {
        Conn::over(TcpStream::connect(addr).await?, ca_pem, proto).await
    }

    pub async fn over(tcp: TcpStream, ca_pem: &[u8], proto: Proto) -> std::io::Result<Conn> {
        Conn::handshake(tls_over(tcp, ca_pem, proto).await?, proto).await
    }

    /// HTTP over an established TLS stream. With TLS 1.3 a server refuses a client
    /// certificate after the client's handshake ends: that error comes with the first read.
    pub async fn handshake(tls: TlsStream<TcpStream>, proto: Proto) -> std::io::Result<Conn> {
        let io = TokioIo::new(tls);
        Ok(match proto {
            Proto::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Proto::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                Conn::H2(sender)
            }
        })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), hyper::Error> {
        let uri = match self {
            Conn::H1(_) => path.to_string(),
            Conn::H2(_) => format!("https://localhost{path}"),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Conn::H1(_) = self {
            builder = builder.header("host", "localhost");
        }
        let request = builder.body(Full::new(Bytes::from(body))).unwrap();
        let response = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Sends one request on a fresh connection; the error when there is no answer.
pub async fn request_result(
    addr: SocketAddr,
    ca_pem: &[u8],
    proto: Proto,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), String> {
    let mut conn = Conn::open(addr, ca_pem, proto)
        .await
        .map_err(|e| e.to_string())?;
    conn.send(method, path, body)
        .await
        .map_err(|e| e.to_string())
}

/// Sends one request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    ca_pem: &[u8],
    proto: Proto,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    request_result(addr, ca_pem, proto, method, path, body)
        .await
        .expect("request")
}

/// Writes a fresh CA and localhost serving certificate into `dir`; returns the CA PEM.
pub fn write_certs(dir: &Path) -> Vec<u8> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certs = sts_guard::server::certs::generate(&names, 30).unwrap();
    sts_guard::server::certs::write_dir(dir, &certs, true).unwrap();
    certs.ca_cert.into_bytes()
}
