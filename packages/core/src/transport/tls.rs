//! TLS as Node's `tls.connect` configures it, on rustls: trusted roots (`ca`, or the system's plus
//! `NODE_EXTRA_CA_CERTS`), a client certificate for mutual TLS, `rejectUnauthorized` and `servername`.
//!
//! The certificate verifier is ours, wrapping webpki's checks, for two reasons: a failure must reach the
//! caller with the code OpenSSL/Node give it (`DEPTH_ZERO_SELF_SIGNED_CERT`, `CERT_HAS_EXPIRED`,
//! `ERR_TLS_CERT_ALTNAME_INVALID`, …), which needs a look at the chain the server sent; and `servername` must
//! replace the URL's host as the name the certificate is checked against.

use crate::error::CoreError;
use crate::options::TlsOptions;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A certificate the verifier refused, with Node's code and message for the reason.
#[derive(Debug, Clone)]
pub(crate) struct CertificateRejected {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for CertificateRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CertificateRejected {}

/// The system's trusted roots, read once per process (reading the store takes milliseconds).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, CoreError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CoreError::invalid_argument(format!("invalid {what}: {e}")))?;
    if certs.is_empty() {
        return Err(CoreError::invalid_argument(format!(
            "invalid {what}: no PEM certificate found"
        )));
    }
    Ok(certs)
}

/// The trusted roots, and the certificates the caller named explicitly (`ca`, `NODE_EXTRA_CA_CERTS`).
fn root_store(
    options: &TlsOptions,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), CoreError> {
    let mut roots = RootCertStore::empty();
    let mut explicit = Vec::new();
    match &options.ca {
        Some(ca) => {
            explicit = pem_certificates(ca, "ca")?;
            let (added, _) = roots.add_parsable_certificates(explicit.iter().cloned());
            if added == 0 {
                return Err(CoreError::invalid_argument(
                    "invalid ca: no usable certificate",
                ));
            }
        }
        None => {
            roots.add_parsable_certificates(system_roots().iter().cloned());
            if let Some(extra) = &options.extra_ca {
                // Node warns and goes on when NODE_EXTRA_CA_CERTS cannot be read; so do we.
                if let Ok(certs) = pem_certificates(extra, "NODE_EXTRA_CA_CERTS") {
                    roots.add_parsable_certificates(certs.iter().cloned());
                    explicit = certs;
                }
            }
        }
    }
    Ok((roots, explicit))
}

/// How one peer (the origins, or a proxy) is verified.
#[derive(Debug)]
struct Trust {
    roots: RootCertStore,
    /// Certificates trusted by name in the options: OpenSSL accepts one of them as the server's certificate
    /// even when it is a CA certificate (a self-signed certificate made by `openssl req -x509`), webpki not.
    explicit: Vec<CertificateDer<'static>>,
    reject_unauthorized: bool,
    servername: Option<ServerName<'static>>,
}

impl Trust {
    fn new(options: &TlsOptions) -> Result<Trust, CoreError> {
        let servername = match &options.servername {
            Some(name) if !name.is_empty() => {
                Some(ServerName::try_from(name.clone()).map_err(|_| {
                    CoreError::invalid_argument(format!("invalid servername: {name}"))
                })?)
            }
            _ => None,
        };
        let (roots, explicit) = root_store(options)?;
        Ok(Trust {
            roots,
            explicit,
            reject_unauthorized: options.reject_unauthorized,
            servername,
        })
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<(), rustls::Error> {
        if !self.reject_unauthorized {
            return Ok(());
        }
        let cert = ParsedCertificate::try_from(end_entity)
            .map_err(|e| rejected(self.classify(&e, end_entity, intermediates, server_name)))?;
        // Which failure is reported when several apply: Node lets OpenSSL check everything and reports the last
        // failure found, so validity dates win over an unknown issuer, as they do in webpki's order.
        let chain = verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            algorithms.all,
        );
        if let Err(error) = chain {
            let trusted_as_is = is_ca_used_as_end_entity(&error)
                && self
                    .explicit
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref());
            if !trusted_as_is {
                return Err(rejected(self.classify(
                    &error,
                    end_entity,
                    intermediates,
                    server_name,
                )));
            }
        }
        let name = self.servername.as_ref().unwrap_or(server_name);
        verify_server_name(&cert, name)
            .map_err(|e| rejected(self.classify(&e, end_entity, intermediates, name)))
    }

    /// Node's code for a failed verification. A lone self-issued certificate that is not trusted is
    /// `DEPTH_ZERO_SELF_SIGNED_CERT` unless its dates or names are wrong, as Node reports it.
    fn classify(
        &self,
        error: &rustls::Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> CertificateRejected {
        let reported_as_is = matches!(
            error,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ) || is_time_of(error);
        if !reported_as_is && intermediates.is_empty() && self_issued(end_entity) {
            let identity = der::names_and_key(end_entity.as_ref()).map(|(_, s, k)| (s, k));
            let anchored = self.roots.roots.iter().any(|anchor| {
                Some((
                    anchor.subject.as_ref(),
                    anchor.subject_public_key_info.as_ref(),
                )) == identity
            });
            if !anchored {
                return CertificateRejected {
                    code: "DEPTH_ZERO_SELF_SIGNED_CERT",
                    message: "self-signed certificate".to_string(),
                };
            }
        }
        classify(error, end_entity, intermediates, name)
    }
}

fn is_time_error(error: &CertificateError) -> bool {
    matches!(
        error,
        CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
    )
}

fn is_time_of(error: &rustls::Error) -> bool {
    matches!(error, rustls::Error::InvalidCertificate(e) if is_time_error(e))
}

/// webpki's refusal of a CA certificate presented as the server's own (reported as an opaque error).
fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    matches!(error, rustls::Error::InvalidCertificate(CertificateError::Other(other))
        if format!("{other:?}").contains("CaUsedAsEndEntity"))
}

fn rejected(reason: CertificateRejected) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        reason,
    ))))
}

/// Verifies server certificates as Node does with `rejectUnauthorized` and `servername`. One verifier serves
/// one peer's settings: a proxy and the origins behind it have configurations of their own (`proxied.rs`).
#[derive(Debug)]
struct NodeVerifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.trust
            .verify(
                end_entity,
                intermediates,
                server_name,
                now,
                &self.algorithms,
            )
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client configuration for one peer's settings (the origins' `connect` / `requestTls`, or a
/// proxy's `proxyTls`). `alpn` lists the protocols offered, most preferred first.
pub(crate) fn client_config(
    options: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, CoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier = NodeVerifier {
        trust: Trust::new(options)?,
        algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| CoreError::invalid_argument(format!("invalid TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert, "cert")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| CoreError::invalid_argument(format!("invalid key: {e}")))?;
            builder.with_client_cert_resolver(Arc::new(ClientIdentity::new(chain, key, &provider)?))
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(CoreError::invalid_argument(
                "cert and key must be given together",
            ))
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The client certificate (`cert`, `key`) shown to servers that ask for one.
///
/// rustls's own `with_client_auth_cert` parses the certificate with webpki to check it matches the key, and
/// webpki refuses X.509 version 1 certificates — what `openssl x509 -req` makes without extensions, common in
/// internal PKIs, and accepted by Node. The certificate is only sent, never verified here (the server does
/// that), so the key is checked against it with our own DER reading instead.
#[derive(Debug)]
struct ClientIdentity(Arc<rustls::sign::CertifiedKey>);

impl ClientIdentity {
    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Self, CoreError> {
        let invalid = |detail: &dyn fmt::Display| {
            CoreError::invalid_argument(format!("invalid cert/key pair: {detail}"))
        };
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| invalid(&e))?;
        let cert_key = chain
            .first()
            .and_then(|cert| der::names_and_key(cert.as_ref()))
            .map(|(_, _, key)| key)
            .ok_or_else(|| invalid(&"the certificate cannot be read"))?;
        if let Some(spki) = signing.public_key() {
            if der::contents(spki.as_ref()) != Some(cert_key) {
                return Err(invalid(&"the key does not match the certificate"));
            }
        }
        Ok(ClientIdentity(Arc::new(rustls::sign::CertifiedKey::new(
            chain, signing,
        ))))
    }
}

impl rustls::client::ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Node's code and message for a certificate that failed verification.
fn classify(
    error: &rustls::Error,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    name: &ServerName<'_>,
) -> CertificateRejected {
    let reason = |code: &'static str, message: &str| CertificateRejected {
        code,
        message: message.to_string(),
    };
    let rustls::Error::InvalidCertificate(error) = error else {
        return reason("CERT_REJECTED", &format!("certificate rejected: {error}"));
    };
    match error {
        CertificateError::UnknownIssuer => {
            if intermediates.is_empty() && self_issued(end_entity) {
                reason("DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed certificate")
            } else if intermediates.iter().any(|c| self_issued(c)) {
                reason(
                    "SELF_SIGNED_CERT_IN_CHAIN",
                    "self-signed certificate in certificate chain",
                )
            } else if intermediates.is_empty() {
                reason(
                    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                    "unable to verify the first certificate",
                )
            } else {
                reason(
                    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
                    "unable to get local issuer certificate",
                )
            }
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            reason("CERT_HAS_EXPIRED", "certificate has expired")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            reason("CERT_NOT_YET_VALID", "certificate is not yet valid")
        }
        CertificateError::Revoked => reason("CERT_REVOKED", "certificate revoked"),
        CertificateError::BadSignature => {
            reason("CERT_SIGNATURE_FAILURE", "certificate signature failure")
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            reason("INVALID_PURPOSE", "unsupported certificate purpose")
        }
        CertificateError::NotValidForName => altname_invalid(name, &[]),
        CertificateError::NotValidForNameContext { presented, .. } => {
            altname_invalid(name, presented)
        }
        other => reason("CERT_REJECTED", &format!("certificate rejected: {other:?}")),
    }
}

/// Node's `ERR_TLS_CERT_ALTNAME_INVALID`, with the message `tls.checkServerIdentity` writes. `presented` holds
/// webpki's descriptions of the certificate's names (`DnsName("example.com")`, `IpAddress(..)`).
fn altname_invalid(name: &ServerName<'_>, presented: &[String]) -> CertificateRejected {
    let dns: Vec<String> = presented
        .iter()
        .filter_map(|p| {
            p.strip_prefix("DnsName(\"")
                .and_then(|s| s.strip_suffix("\")"))
                .map(|s| format!("DNS:{s}"))
        })
        .collect();
    let message = match name {
        ServerName::IpAddress(ip) => format!(
            "Hostname/IP does not match certificate's altnames: IP: {} is not in the cert's list: ",
            std::net::IpAddr::from(*ip)
        ),
        other => format!(
            "Hostname/IP does not match certificate's altnames: Host: {}. is not in the cert's altnames: {}",
            other.to_str(),
            dns.join(", ")
        ),
    };
    CertificateRejected {
        code: "ERR_TLS_CERT_ALTNAME_INVALID",
        message,
    }
}

/// Whether a certificate names itself as its issuer (what OpenSSL calls self-signed when it has no other
/// way to verify it).
fn self_issued(cert: &CertificateDer<'_>) -> bool {
    matches!(der::issuer_and_subject(cert.as_ref()), Some((issuer, subject)) if issuer == subject)
}

/// Just enough DER to find a certificate's issuer and subject names.
pub(crate) mod der {
    /// Splits one TLV element off `input`: (whole element, its contents, the rest).
    fn element(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
        let first = *input.get(1)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let count = (first & 0x7f) as usize;
            if count == 0 || count > 4 {
                return None;
            }
            let bytes = input.get(2..2 + count)?;
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
            (len, 2 + count)
        };
        let end = header.checked_add(len)?;
        let whole = input.get(..end)?;
        Some((whole, &whole[header..], &input[end..]))
    }

    /// The contents of `issuer` and `subject` (without tag and length, as webpki's trust anchors keep a
    /// subject).
    pub(crate) fn issuer_and_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        names_and_key(cert).map(|(issuer, subject, _)| (issuer, subject))
    }

    /// The contents of the one DER element `der` holds (without tag and length).
    pub(crate) fn contents(der: &[u8]) -> Option<&[u8]> {
        match element(der)? {
            (_, contents, []) => Some(contents),
            _ => None,
        }
    }

    /// `issuer`, `subject` and `subjectPublicKeyInfo`, each without tag and length.
    pub(crate) fn names_and_key(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
        let (_, certificate, _) = element(cert)?;
        let (_, tbs, _) = element(certificate)?;
        let mut rest = tbs;
        if rest.first() == Some(&0xa0) {
            rest = element(rest)?.2; // version
        }
        rest = element(rest)?.2; // serialNumber
        rest = element(rest)?.2; // signature
        let (_, issuer, rest) = element(rest)?;
        let rest = element(rest)?.2; // validity
        let (_, subject, rest) = element(rest)?;
        let (_, key, _) = element(rest)?;
        Some((issuer, subject, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn der_walk_rejects_truncated_input() {
        assert!(der::issuer_and_subject(&[0x30, 0x82, 0x01]).is_none());
        assert!(der::issuer_and_subject(&[]).is_none());
    }

    #[test]
    fn cert_without_key_is_an_invalid_argument() {
        let options = TlsOptions {
            cert: Some(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec()),
            ..TlsOptions::default()
        };
        let err = client_config(&options, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn altname_message_follows_node() {
        let name = ServerName::try_from("example.test").unwrap();
        let reason = altname_invalid(&name, &["DnsName(\"localhost\")".to_string()]);
        assert_eq!(reason.code, "ERR_TLS_CERT_ALTNAME_INVALID");
        assert_eq!(
            reason.message,
            "Hostname/IP does not match certificate's altnames: Host: example.test. is not in the cert's altnames: DNS:localhost"
        );
    }
}
