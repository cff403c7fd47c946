//! Transport behaviour of the core against local servers: TLS (roots, Node's error codes, `servername`,
//! `rejectUnauthorized`, mutual TLS), HTTP/2 (ALPN, h2c, one connection for many requests), the `connections`
//! cap and its stats, proxies and the local address. Certificates are made by rcgen at test time.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest_dispatcher_core::{AgentOptions, DispatchRequest, ErrorKind, ProxyOptions, TlsOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{agent_with, dispatch, raw_server, read_request_head};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A certificate and its key, as PEM and as rustls wants them.
struct Identity {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_pem: String,
}

fn leaf_params(names: &[&str], purpose: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.extended_key_usages = vec![purpose];
    params
}

impl Pki {
    fn new() -> Pki {
        Pki::named("transport test CA")
    }

    fn named(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = ca.pem();
        Pki { ca, ca_pem }
    }

    fn issue(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Identity {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    fn server(&self) -> Identity {
        self.issue(leaf_params(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ))
    }

    fn client(&self) -> Identity {
        self.issue(leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth))
    }
}

fn self_signed_server() -> Identity {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
    .self_signed(&key)
    .unwrap();
    Identity {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the TLS server saw of each connection.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    client_certs: AtomicUsize,
}

/// A TLS server on 127.0.0.1 answering every request with the HTTP version it came over. `client_ca`
/// makes it require a client certificate issued by that CA; `alpn` lists the protocols it offers.
async fn tls_server(
    identity: &Identity,
    client_ca: Option<&Pki>,
    alpn: &[&[u8]],
) -> (SocketAddr, Arc<Seen>) {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![identity.der.clone()], identity.key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen_by_server = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            seen_by_server.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen_by_server);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                if session.peer_certificates().is_some_and(|c| !c.is_empty()) {
                    seen.client_certs.fetch_add(1, Ordering::SeqCst);
                }
                let h2 = session.alpn_protocol() == Some(b"h2");
                serve(TokioIo::new(tls), h2).await;
            });
        }
    });
    (addr, seen)
}

async fn version_of(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Response::new(Full::new(Bytes::from(format!(
        "{:?}",
        req.version()
    )))))
}

async fn serve<I>(io: I, h2: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service_fn(version_of))
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service_fn(version_of))
            .await;
    }
}

/// A cleartext server speaking HTTP/1.1 (or HTTP/2 by prior knowledge), counting connections.
async fn plain_server(h2: bool) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(TokioIo::new(stream), h2));
        }
    });
    (addr, seen)
}

fn tls(ca: Option<&str>) -> TlsOptions {
    TlsOptions {
        ca: ca.map(|pem| pem.as_bytes().to_vec()),
        ..TlsOptions::default()
    }
}

fn with_tls(tls: TlsOptions) -> AgentOptions {
    AgentOptions {
        tls,
        ..AgentOptions::default()
    }
}

async fn body_of(agent: &reqwest_dispatcher_core::Agent, url: String) -> String {
    let (_, body, _) = dispatch(agent, DispatchRequest::new("GET", url))
        .finish()
        .await
        .ok();
    String::from_utf8(body).unwrap()
}

async fn error_of(
    agent: &reqwest_dispatcher_core::Agent,
    url: String,
) -> reqwest_dispatcher_core::CoreError {
    dispatch(agent, DispatchRequest::new("GET", url))
        .finish()
        .await
        .err()
        .clone()
}

#[tokio::test]
async fn trusts_a_server_certificate_issued_by_the_ca_option() {
    let pki = Pki::new();
    let (addr, _) = tls_server(&pki.server(), None, &[]).await;
    let agent = agent_with(with_tls(tls(Some(&pki.ca_pem))));
    assert_eq!(
        body_of(&agent, format!("https://{addr}/")).await,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_is_depth_zero_self_signed_cert() {
    let (addr, _) = tls_server(&self_signed_server(), None, &[]).await;
    let agent = agent_with(with_tls(tls(None)));
    let error = error_of(&agent, format!("https://{addr}/")).await;
    assert_eq!(error.kind, ErrorKind::Tls("DEPTH_ZERO_SELF_SIGNED_CERT"));
    assert_eq!(error.message, "self-signed certificate");
}

#[tokio::test]
async fn an_unknown_issuer_is_unable_to_verify_leaf_signature() {
    let pki = Pki::new();
    let other = Pki::named("another test CA");
    let (addr, _) = tls_server(&pki.server(), None, &[]).await;
    let agent = agent_with(with_tls(tls(Some(&other.ca_pem))));
    let error = error_of(&agent, format!("https://{addr}/")).await;
    assert_eq!(
        error.kind,
        ErrorKind::Tls("UNABLE_TO_VERIFY_LEAF_SIGNATURE")
    );
}

#[tokio::test]
async fn an_expired_certificate_is_cert_has_expired() {
    let pki = Pki::new();
    let mut params = leaf_params(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let (addr, _) = tls_server(&pki.issue(params), None, &[]).await;
    let agent = agent_with(with_tls(tls(Some(&pki.ca_pem))));
    let error = error_of(&agent, format!("https://{addr}/")).await;
    assert_eq!(error.kind, ErrorKind::Tls("CERT_HAS_EXPIRED"));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_altname_invalid_unless_servername_names_it() {
    let pki = Pki::new();
    let identity = pki.issue(leaf_params(
        &["example.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    ));
    let (addr, _) = tls_server(&identity, None, &[]).await;
    let agent = agent_with(with_tls(tls(Some(&pki.ca_pem))));
    let error = error_of(&agent, format!("https://{addr}/")).await;
    assert_eq!(error.kind, ErrorKind::Tls("ERR_TLS_CERT_ALTNAME_INVALID"));
    assert!(error.message.starts_with(
        "Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list"
    ));

    let agent = agent_with(with_tls(TlsOptions {
        servername: Some("example.test".into()),
        ..tls(Some(&pki.ca_pem))
    }));
    assert_eq!(
        body_of(&agent, format!("https://{addr}/")).await,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn reject_unauthorized_false_accepts_any_certificate() {
    let (addr, _) = tls_server(&self_signed_server(), None, &[]).await;
    let agent = agent_with(with_tls(TlsOptions {
        reject_unauthorized: false,
        ..TlsOptions::default()
    }));
    assert_eq!(
        body_of(&agent, format!("https://{addr}/")).await,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let (addr, seen) = tls_server(&pki.server(), Some(&pki), &[]).await;
    let client = pki.client();
    let agent = agent_with(with_tls(TlsOptions {
        cert: Some(client.pem.into_bytes()),
        key: Some(client.key_pem.into_bytes()),
        ..tls(Some(&pki.ca_pem))
    }));
    assert_eq!(
        body_of(&agent, format!("https://{addr}/")).await,
        "HTTP/1.1"
    );
    assert_eq!(seen.client_certs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_required_client_certificate_the_alert_keeps_openssl_name() {
    let pki = Pki::new();
    let (addr, _) = tls_server(&pki.server(), Some(&pki), &[]).await;
    let agent = agent_with(with_tls(tls(Some(&pki.ca_pem))));
    let error = error_of(&agent, format!("https://{addr}/")).await;
    assert_eq!(
        error.kind,
        ErrorKind::Tls("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
    );
}

#[tokio::test]
async fn a_pem_without_certificates_is_an_invalid_argument() {
    let result = reqwest_dispatcher_core::Agent::new(with_tls(tls(Some("not a certificate"))));
    assert_eq!(
        result.err().map(|e| e.kind),
        Some(ErrorKind::InvalidArgument)
    );
}

async fn concurrent_bodies(
    agent: &reqwest_dispatcher_core::Agent,
    url: &str,
    n: usize,
) -> Vec<String> {
    let requests: Vec<_> = (0..n)
        .map(|_| dispatch(agent, DispatchRequest::new("GET", url.to_string())))
        .collect();
    let mut bodies = Vec::new();
    for events in requests {
        let (_, body, _) = events.finish().await.ok();
        bodies.push(String::from_utf8(body).unwrap());
    }
    bodies
}

#[tokio::test]
async fn allow_h2_multiplexes_concurrent_requests_on_one_connection() {
    let pki = Pki::new();
    let (addr, seen) = tls_server(&pki.server(), None, &[b"h2", b"http/1.1"]).await;
    let agent = agent_with(AgentOptions {
        allow_h2: true,
        ..with_tls(tls(Some(&pki.ca_pem)))
    });
    let bodies = concurrent_bodies(&agent, &format!("https://{addr}/"), 50).await;
    assert!(bodies.iter().all(|b| b == "HTTP/2.0"), "{bodies:?}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_allow_h2_only_http1_is_offered() {
    let pki = Pki::new();
    let (addr, _) = tls_server(&pki.server(), None, &[b"h2", b"http/1.1"]).await;
    let agent = agent_with(with_tls(tls(Some(&pki.ca_pem))));
    assert_eq!(
        body_of(&agent, format!("https://{addr}/")).await,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn h2c_speaks_http2_by_prior_knowledge_on_one_connection() {
    let (addr, seen) = plain_server(true).await;
    let agent = agent_with(AgentOptions {
        h2c: true,
        ..AgentOptions::default()
    });
    let bodies = concurrent_bodies(&agent, &format!("http://{addr}/"), 50).await;
    assert!(bodies.iter().all(|b| b == "HTTP/2.0"), "{bodies:?}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connections_caps_sockets_per_origin_and_stats_count_the_queue() {
    let (addr, seen) = plain_server(false).await;
    let agent = agent_with(AgentOptions {
        connections: Some(2),
        ..AgentOptions::default()
    });
    let url = format!("http://{addr}/slow");
    let requests: Vec<_> = (0..6)
        .map(|_| dispatch(&agent, DispatchRequest::new("GET", url.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = agent.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].origin, format!("http://{addr}"));
    assert_eq!((stats[0].pending, stats[0].running), (4, 2));
    for events in requests {
        events.finish().await.ok();
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_forward_proxy_gets_absolute_form_requests_with_its_credentials() {
    let proxy = raw_server(|mut stream| async move {
        let Ok(head) = read_request_head(&mut stream).await else {
            return;
        };
        let head = String::from_utf8_lossy(&head).to_string();
        let line = head.lines().next().unwrap_or("").to_string();
        let auth = head
            .lines()
            .find_map(|l| l.strip_prefix("proxy-authorization: "))
            .unwrap_or("none")
            .to_string();
        let body = format!("{line}|{auth}");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await;
    let agent = agent_with(AgentOptions {
        proxy: Some(ProxyOptions {
            http: Some(format!("http://{proxy}")),
            headers: vec![("proxy-authorization".into(), "Bearer t0ken".into())],
            ..ProxyOptions::default()
        }),
        ..AgentOptions::default()
    });
    assert_eq!(
        body_of(&agent, "http://origin.test:8080/a?b=1".into()).await,
        "GET http://origin.test:8080/a?b=1 HTTP/1.1|Bearer t0ken"
    );
}

#[tokio::test]
async fn no_proxy_sends_matching_origins_direct() {
    let (addr, seen) = plain_server(false).await;
    let agent = agent_with(AgentOptions {
        proxy: Some(ProxyOptions {
            http: Some("http://127.0.0.1:9".into()),
            no_proxy: Some(format!("localhost, 127.0.0.1:{}", addr.port())),
            ..ProxyOptions::default()
        }),
        ..AgentOptions::default()
    });
    assert_eq!(body_of(&agent, format!("http://{addr}/")).await, "HTTP/1.1");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn local_address_binds_outgoing_connections() {
    let peer = raw_server(|mut stream| async move {
        let Ok(_) = read_request_head(&mut stream).await else {
            return;
        };
        let from = stream.peer_addr().unwrap().ip().to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{from}",
            from.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await;
    let agent = agent_with(AgentOptions {
        local_address: Some("127.0.0.2".parse().unwrap()),
        ..AgentOptions::default()
    });
    assert_eq!(
        body_of(&agent, format!("http://{peer}/")).await,
        "127.0.0.2"
    );
}
