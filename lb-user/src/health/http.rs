//! `http` / `https` checks (keepalived `HTTP_GET` / `SSL_GET`): one HTTP/1.1 request with a
//! `Host` header (keepalived `virtualhost`), TLS SNI from the same name, status codes, body
//! regex and MD5 digest of the body.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use regex::bytes::Regex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tcp::connect_reason;
use super::ProbeError;
use super::{Outcome, Probe};
use crate::config::{Check, CheckType, HttpMethod};

/// Bytes of the body read at most (the regex and digest see this prefix).
pub const MAX_BODY: usize = 1 << 20;

/// A prepared HTTP(S) check.
pub struct HttpProbe {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    method: Method,
    path: String,
    host: String,
    status_codes: Vec<u16>,
    body_regex: Option<Regex>,
    digest: Option<String>,
}

impl HttpProbe {
    /// Prepare the check `check` of `addr` (TLS configuration, regex). Errors: unreadable
    /// `ca_file`, bad regex (validation rejects those), bad SNI name.
    pub fn new(check: &Check, addr: SocketAddr) -> Result<Self, ProbeError> {
        let https = check.kind == CheckType::Https;
        let host = match &check.host {
            Some(h) => h.clone(),
            None => default_host(addr, https),
        };
        let tls = if https {
            let name = match &check.host {
                Some(h) => ServerName::try_from(strip_port(h).to_string()).map_err(|e| {
                    ProbeError::ServerName {
                        name: h.clone(),
                        reason: e.to_string(),
                    }
                })?,
                None => ServerName::IpAddress(addr.ip().into()),
            };
            let ca = check.ca_file.as_deref();
            let config = client_config(check.tls_verify, ca)?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let method = match check.method {
            HttpMethod::Head => Method::HEAD,
            HttpMethod::Get => Method::GET,
        };
        let body_regex = check
            .body_regex
            .as_ref()
            .map(|r| Regex::new(r).map_err(ProbeError::from))
            .transpose()?;
        Ok(HttpProbe {
            addr,
            tls,
            method,
            path: check.path.clone().unwrap_or_else(|| "/".to_string()),
            host,
            status_codes: check
                .status_codes
                .as_ref()
                .map_or_else(|| vec![200], |c| c.clone()),
            body_regex,
            digest: check.digest.as_ref().map(|d| d.to_lowercase()),
        })
    }

    async fn exchange<S>(&self, io: S) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
            TokioIo::new(io),
        )
        .await
        {
            Ok(x) => x,
            Err(e) => return Outcome::down(format!("http error: {e}")),
        };
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let req = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(HOST, &self.host)
            .header(
                USER_AGENT,
                concat!("xlb-health/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONNECTION, "close")
            .body(Empty::new());
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::down(format!("bad request: {e}")),
        };
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return Outcome::down(format!("http error: {e}")),
        };
        let status = resp.status().as_u16();
        if !self.status_codes.contains(&status) {
            return Outcome::down(format!("status {status}"));
        }
        if self.body_regex.is_none() && self.digest.is_none() {
            return Outcome::up(format!("status {status}"));
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while buf.len() < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(Err(e)) => return Outcome::down(format!("http body error: {e}")),
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        let n = d.len().min(MAX_BODY - buf.len());
                        buf.extend_from_slice(&d[..n]);
                    }
                }
            }
        }
        if let Some(re) = &self.body_regex {
            if !re.is_match(&buf) {
                return Outcome::down("body mismatch");
            }
        }
        if let Some(want) = &self.digest {
            let got = md5_hex(&buf);
            if &got != want {
                return Outcome::down(format!("digest mismatch ({got})"));
            }
        }
        Outcome::up(format!("status {status}"))
    }
}

impl Probe for HttpProbe {
    async fn probe(&self) -> Outcome {
        let tcp = match TcpStream::connect(self.addr).await {
            Ok(s) => s,
            Err(e) => return Outcome::down(connect_reason(&e)),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp).await,
            Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
                Ok(tls) => self.exchange(tls).await,
                Err(e) => Outcome::down(format!("TLS error: {e}")),
            },
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// MD5 of `data` in lowercase hex (keepalived `digest`, `genhash`, `md5sum`).
pub fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `Host` header when none is configured: the address, with the port unless it is the
/// scheme's default.
fn default_host(addr: SocketAddr, https: bool) -> String {
    let default_port = if https { 443 } else { 80 };
    match (addr, addr.port() == default_port) {
        (SocketAddr::V4(a), true) => a.ip().to_string(),
        (SocketAddr::V6(a), true) => format!("[{}]", a.ip()),
        (a, false) => a.to_string(),
    }
}

/// The name part of a `Host` value (`name:port`, `[v6]:port`).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}

/// TLS client configuration: `verify` against `ca_file` (PEM) or the webpki (Mozilla) roots;
/// without `verify` any certificate is accepted (keepalived `SSL_GET` default), though the
/// handshake signature is still checked.
pub fn client_config(
    verify: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<ClientConfig, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if verify {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let bad = |reason: String| ProbeError::CaFile {
                    path: path.to_path_buf(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| bad(e.to_string()))?;
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no certificate".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `tls_verify = false`: any certificate, any name.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            default_host("10.0.0.1:80".parse().unwrap(), false),
            "10.0.0.1"
        );
        assert_eq!(
            default_host("10.0.0.1:8080".parse().unwrap(), false),
            "10.0.0.1:8080"
        );
        assert_eq!(
            default_host("[2001:db8::1]:443".parse().unwrap(), true),
            "[2001:db8::1]"
        );
        assert_eq!(strip_port("www.example.com:8443"), "www.example.com");
        assert_eq!(strip_port("www.example.com"), "www.example.com");
        assert_eq!(strip_port("[::1]:443"), "::1");
    }
}
