//! TLS configurations for both sides of the sidecar (rustls with the ring provider,
//! chosen explicitly rather than through a process-wide default), and self-signed
//! certificates for `shardcar local` and tests.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

use crate::config::{ServerTlsConfig, UpstreamTlsConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls.client_ca_file: {0}")]
    ClientVerifier(String),
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key (PKCS#1, PKCS#8 or SEC1) found", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: certificate not accepted as a trust root: {source}", path.display())]
    BadRoot {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("upstream.tls: verify is true but no ca_file gives trust roots")]
    NoTrustRoots,
    #[error("{name:?} is not a valid TLS server name (a DNS name or an IP address)")]
    InvalidServerName { name: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("generating a self-signed certificate failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// The ring provider, used for every configuration built here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Every PEM certificate in `path`, in order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first PEM private key in `path`.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_owned(),
        })
}

/// The server side, toward applications: the configured certificate chain and key.
pub fn server_config(c: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(&c.cert_file)?;
    let key = load_private_key(&c.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = match &c.client_ca_file {
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
        Some(path) => {
            let roots = Arc::new(load_roots(path)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if c.require_client_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
    };
    Ok(Arc::new(config))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadRoot {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The identity a verified client certificate names: its first URI SAN (a SPIFFE id),
/// else its first DNS SAN, else its subject's common name.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    if let Some(Ok(Some((_, san)))) = Some(tbs.get::<SubjectAltName>()) {
        let uri = san.0.iter().find_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        });
        let dns = san.0.iter().find_map(|n| match n {
            GeneralName::DnsName(d) => Some(d.to_string()),
            _ => None,
        });
        if let Some(id) = uri.or(dns) {
            return Some(id);
        }
    }
    const CN: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    tbs.subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find_map(|atv| {
            (atv.oid == CN).then(|| {
                atv.value
                    .decode_as::<x509_cert::der::asn1::Utf8StringRef>()
                    .map(|s| s.as_str().to_owned())
                    .or_else(|_| {
                        atv.value
                            .decode_as::<x509_cert::der::asn1::PrintableStringRef>()
                            .map(|s| s.as_str().to_owned())
                    })
                    .ok()
            })?
        })
}

/// The client side, toward mysqld: roots from `ca_file`, or, with `verify: false`, a
/// verifier that accepts any certificate.
pub fn client_config(c: &UpstreamTlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = if c.verify {
        let path = c.ca_file.as_deref().ok_or(TlsError::NoTrustRoots)?;
        builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth()
    } else {
        tracing::warn!(
            "upstream.tls.verify is false: the upstream's certificate is not checked, so the \
             connection is encrypted but not protected against an active attacker"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name to present (SNI) and verify toward the upstream: `server_name` if set, else
/// `upstream_host` (IPv6 brackets removed).
pub fn server_name(
    c: &UpstreamTlsConfig,
    upstream_host: &str,
) -> Result<ServerName<'static>, TlsError> {
    let name = c.server_name.as_deref().unwrap_or(upstream_host);
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::InvalidServerName {
        name: name.to_owned(),
    })
}

/// Writes a fresh self-signed certificate for `hosts` (DNS names or IP addresses) and
/// its key to `dir/cert.pem` and `dir/key.pem` (the key readable by the owner only),
/// returning both paths.
pub fn self_signed(dir: &Path, hosts: &[&str]) -> Result<(PathBuf, PathBuf), TlsError> {
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    write_file(&cert_path, certified.cert.pem().as_bytes(), 0o644)?;
    write_file(
        &key_path,
        certified.key_pair.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(contents).map_err(err)
}

/// DANGER: accepts any server certificate for any name. Handshake signatures are still
/// checked (so the peer holds the key of the certificate it sent), but nothing ties that
/// certificate to the upstream: anyone on the path can impersonate it. Only for
/// `upstream.tls.verify: false`, on networks where encryption against passive
/// listeners is all that is wanted.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        crypto::verify_tls12_signature(
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
        crypto::verify_tls13_signature(
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

    fn upstream_tls(verify: bool, ca_file: Option<PathBuf>) -> UpstreamTlsConfig {
        UpstreamTlsConfig {
            enabled: true,
            ca_file,
            verify,
            server_name: None,
        }
    }

    #[test]
    fn self_signed_certificate_loads_as_server_and_client_config(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = self_signed(dir.path(), &["localhost", "127.0.0.1"])?;
        let server = server_config(&ServerTlsConfig {
            cert_file: cert.clone(),
            key_file: key.clone(),
            required: true,
            client_ca_file: None,
            require_client_certificate: false,
        })?;
        assert!(server.alpn_protocols.is_empty());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
        client_config(&upstream_tls(true, Some(cert)))?;
        Ok(())
    }

    /// A full handshake in memory: the verifying client trusts the self-signed cert,
    /// and the non-verifying client accepts it under any name.
    #[test]
    fn handshake_succeeds_with_ca_and_with_verify_off() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = self_signed(dir.path(), &["localhost"])?;
        let server = server_config(&ServerTlsConfig {
            cert_file: cert.clone(),
            key_file: key,
            required: false,
            client_ca_file: None,
            require_client_certificate: false,
        })?;
        let cases = [
            (upstream_tls(true, Some(cert.clone())), "localhost", true),
            (upstream_tls(true, Some(cert)), "other.example", false),
            (upstream_tls(false, None), "other.example", true),
        ];
        for (cfg, host, should_succeed) in cases {
            let client = client_config(&cfg)?;
            let name = server_name(&cfg, host)?;
            let mut c = rustls::ClientConnection::new(client, name)?;
            let mut s = rustls::ServerConnection::new(server.clone())?;
            let ok = handshake(&mut c, &mut s).is_ok();
            assert_eq!(ok, should_succeed, "{host} verify={}", cfg.verify);
        }
        Ok(())
    }

    fn handshake(
        c: &mut rustls::ClientConnection,
        s: &mut rustls::ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                c.process_new_packets()?;
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    #[test]
    fn verify_without_roots_is_refused() {
        assert!(matches!(
            client_config(&upstream_tls(true, None)),
            Err(TlsError::NoTrustRoots)
        ));
    }

    #[test]
    fn missing_or_empty_files_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "")?;
        let cfg = ServerTlsConfig {
            cert_file: empty.clone(),
            key_file: empty.clone(),
            required: false,
            client_ca_file: None,
            require_client_certificate: false,
        };
        let err = server_config(&cfg).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("no PEM certificate")),
            "{err:?}"
        );
        let cfg = ServerTlsConfig {
            cert_file: dir.path().join("missing.pem"),
            ..cfg
        };
        let err = server_config(&cfg).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("missing.pem")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn server_name_prefers_the_configured_name_and_strips_brackets(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut cfg = upstream_tls(false, None);
        assert_eq!(
            server_name(&cfg, "[::1]")?,
            ServerName::IpAddress(std::net::Ipv6Addr::LOCALHOST.into())
        );
        cfg.server_name = Some("db.internal".into());
        assert_eq!(server_name(&cfg, "10.0.0.1")?.to_str(), "db.internal");
        cfg.server_name = Some("bad name".into());
        assert!(server_name(&cfg, "x").is_err());
        Ok(())
    }

    #[test]
    fn certificate_identity_prefers_uri_then_dns_then_common_name() {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let der = |sans: Vec<SanType>, cn: &str| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let uri = SanType::URI("spiffe://shop/ns/web/sa/api".try_into().unwrap());
        let dns = SanType::DnsName("web.shop.svc".try_into().unwrap());
        assert_eq!(
            certificate_identity(&der(vec![dns.clone(), uri], "cn")).as_deref(),
            Some("spiffe://shop/ns/web/sa/api")
        );
        assert_eq!(
            certificate_identity(&der(vec![dns], "cn")).as_deref(),
            Some("web.shop.svc")
        );
        assert_eq!(
            certificate_identity(&der(vec![], "batch-job")).as_deref(),
            Some("batch-job")
        );
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }
}
