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
        let io = TokioIo::new(tls_over(tcp, ca_pem, proto).await?);
        Ok(match proto {
            Proto::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Proto::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
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

/// Sends one request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    ca_pem: &[u8],
    proto: Proto,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let mut conn = Conn::open(addr, ca_pem, proto).await.expect("connect");
    conn.send(method, path, body).await.expect("request")
}

/// Writes a fresh CA and localhost serving certificate into `dir`; returns the CA PEM.
pub fn write_certs(dir: &Path) -> Vec<u8> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certs = sts_guard::server::certs::generate(&names, 30).unwrap();
    sts_guard::server::certs::write_dir(dir, &certs, true).unwrap();
    certs.ca_cert.into_bytes()
}
