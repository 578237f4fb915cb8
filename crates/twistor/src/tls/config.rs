//! TLS configuration: identities (a certificate chain and its private key), trust roots, and
//! the server and client configurations built from them.
//!
//! Everything here loads eagerly and fails with an error that names the file at fault, so a
//! bad path in a configuration is reported when the program starts, not at the first
//! connection. The rustls configurations themselves are built once, on first use, and shared
//! by every connection made with the same (cloned) configuration.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

/// How long a TLS handshake may take, from the connection to its end, unless the
/// configuration says otherwise (nginx's `ssl_handshake_timeout` is 60 s; a client that
/// stalls mid-handshake otherwise holds its connection for ever).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }

    pub(crate) fn from_rustls(version: rustls::ProtocolVersion) -> Option<TlsVersion> {
        match version {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// The one crypto provider twistor uses (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A certificate chain and the private key for its first certificate: what a server shows
/// its clients, or a client shows a server that asks for a certificate.
#[derive(Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    certified: Arc<CertifiedKey>,
}

impl Identity {
    /// Loads an identity from PEM files the way Twisted's `ssl:` endpoint does:
    /// `private_key` holds the key; the certificate is read from `certificate`, or from the
    /// key file itself when `None`; `extra_chain` adds intermediate certificates sent after
    /// it. Errors name the file that is missing, unreadable, malformed or inconsistent.
    pub fn from_pem_files<P: AsRef<Path>>(
        private_key: P,
        certificate: Option<P>,
        extra_chain: Option<P>,
    ) -> Result<Identity, Error> {
        let key_path = private_key.as_ref();
        let key_pem = read_file(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| pem_problem(key_path, "private key", e))?;
        let cert_path = certificate.as_ref().map_or(key_path, |p| p.as_ref());
        let cert_pem = if cert_path == key_path {
            key_pem
        } else {
            read_file(cert_path)?
        };
        let mut chain = certificates_from_pem(cert_path, &cert_pem)?;
        if let Some(extra) = &extra_chain {
            let extra = extra.as_ref();
            chain.extend(certificates_from_pem(extra, &read_file(extra)?)?);
        }
        Identity::from_der(chain, key).map_err(|err| file_error(cert_path, err.to_string()))
    }

    /// An identity from PEM text: the private key, and the certificate chain (leaf first).
    pub fn from_pem(private_key: &[u8], certificate_chain: &[u8]) -> Result<Identity, Error> {
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|e| Error::TlsConfig(format!("no usable private key in PEM text: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(certificate_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::TlsConfig(format!("malformed certificate PEM: {e}")))?;
        Identity::from_der(chain, key)
    }

    /// An identity from DER: the certificate chain (leaf first) and the private key. Fails
    /// if the chain is empty or the key does not belong to the leaf certificate.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, Error> {
        if chain.is_empty() {
            return Err(Error::TlsConfig("no certificate found".into()));
        }
        let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    Error::TlsConfig("the private key does not match the certificate".into())
                }
                other => Error::TlsConfig(format!("unusable private key: {other}")),
            })?;
        Ok(Identity {
            chain,
            key: Arc::new(key),
            certified: Arc::new(certified),
        })
    }

    /// The certificate chain, leaf first.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The certificate authorities a peer's certificate must chain to.
#[derive(Clone)]
pub struct TrustRoots {
    store: Arc<RootCertStore>,
}

impl TrustRoots {
    /// The operating system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` override
    /// where it is looked for). Fails if no usable root is found.
    pub fn system() -> Result<TrustRoots, Error> {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = match found.errors.first() {
                Some(err) => format!(": {err}"),
                None => String::new(),
            };
            return Err(Error::TlsConfig(format!(
                "no system trust roots found{why}"
            )));
        }
        Ok(TrustRoots {
            store: Arc::new(store),
        })
    }

    /// Trust roots from a PEM file (every certificate in it), or from a directory (every
    /// `*.pem`, `*.crt` or `*.cer` file in it), like Twisted's `trustRoots=`. Errors name the
    /// file or directory that cannot be used.
    pub fn from_path(path: impl AsRef<Path>) -> Result<TrustRoots, Error> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
        let mut certs = Vec::new();
        if meta.is_dir() {
            let entries = fs::read_dir(path).map_err(|e| file_error(path, e.to_string()))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(&*e.to_ascii_lowercase(), "pem" | "crt" | "cer"))
                })
                .collect();
            files.sort();
            for file in files {
                certs.extend(certificates_from_pem(&file, &read_file(&file)?)?);
            }
            if certs.is_empty() {
                return Err(file_error(
                    path,
                    "no certificates found (looked for *.pem, *.crt and *.cer files)",
                ));
            }
        } else {
            certs = certificates_from_pem(path, &read_file(path)?)?;
        }
        let mut store = RootCertStore::empty();
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| file_error(path, format!("unusable CA certificate: {e}")))?;
        }
        Ok(TrustRoots {
            store: Arc::new(store),
        })
    }

    /// Trust roots from PEM text holding one or more certificates.
    pub fn from_pem(pem: &[u8]) -> Result<TrustRoots, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::TlsConfig(format!("malformed certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::TlsConfig("no certificates in PEM text".into()));
        }
        TrustRoots::from_der(certs)
    }

    /// Trust roots from DER certificates.
    pub fn from_der(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<TrustRoots, Error> {
        let mut store = RootCertStore::empty();
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| Error::TlsConfig(format!("unusable CA certificate: {e}")))?;
        }
        Ok(TrustRoots {
            store: Arc::new(store),
        })
    }

    /// How many roots there are.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoots")
            .field("roots", &self.store.len())
            .finish()
    }
}

/// Whether a server asks its clients for certificates.
#[derive(Clone, Debug)]
enum ClientAuth {
    None,
    Optional(TrustRoots),
    Required(TrustRoots),
}

/// How a TLS server presents itself: its certificate (one by default, others chosen by the
/// name the client asks for with SNI), ALPN protocols, versions, and client certificates.
///
/// ```no_run
/// use twistor::tls::{Identity, ServerTlsConfig};
///
/// let config = ServerTlsConfig::new(Identity::from_pem_files("key.pem", Some("cert.pem"), None)?)
///     .with_sni_certificate("mail.example.com", Identity::from_pem_files("mail.pem", None, None)?)
///     .with_alpn(["h2", "http/1.1"]);
/// # Ok::<(), twistor::Error>(())
/// ```
///
/// Cloning is cheap; clones share the rustls configuration built from them (and so its
/// session cache), until a `with_*` method changes one of them.
#[derive(Clone)]
pub struct ServerTlsConfig {
    default: Option<Identity>,
    by_name: Vec<(String, Identity)>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    client_auth: ClientAuth,
    handshake_timeout: Option<Duration>,
    built: Arc<OnceLock<Arc<rustls::ServerConfig>>>,
}

impl ServerTlsConfig {
    /// A server showing `identity` to every client (whatever name it asks for, or none),
    /// unless [`with_sni_certificate`](Self::with_sni_certificate) names another.
    pub fn new(identity: Identity) -> ServerTlsConfig {
        ServerTlsConfig {
            default: Some(identity),
            ..ServerTlsConfig::sni_only()
        }
    }

    /// A server with no default certificate: a client that sends no SNI name, or a name
    /// with no certificate, is refused with a handshake failure.
    pub fn sni_only() -> ServerTlsConfig {
        ServerTlsConfig {
            default: None,
            by_name: Vec::new(),
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            client_auth: ClientAuth::None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            built: Arc::new(OnceLock::new()),
        }
    }

    /// The configuration for Twisted's server endpoint
    /// `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:extraCertChain=CHAIN.pem]`: see
    /// [`Identity::from_pem_files`].
    pub fn from_pem_files<P: AsRef<Path>>(
        private_key: P,
        cert_key: Option<P>,
        extra_cert_chain: Option<P>,
    ) -> Result<ServerTlsConfig, Error> {
        Ok(ServerTlsConfig::new(Identity::from_pem_files(
            private_key,
            cert_key,
            extra_cert_chain,
        )?))
    }

    /// Shows `identity` to clients that ask for `name` with SNI. `name` is matched without
    /// regard to case; `*.example.com` matches any single label in front of `example.com`.
    pub fn with_sni_certificate(mut self, name: &str, identity: Identity) -> ServerTlsConfig {
        self.by_name.push((name.to_ascii_lowercase(), identity));
        self.rebuilt()
    }

    /// The ALPN protocols this server speaks, most preferred first (e.g. `h2`,
    /// `http/1.1`). A client offering none of them is refused.
    pub fn with_alpn<I, S>(mut self, protocols: I) -> ServerTlsConfig
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self.rebuilt()
    }

    /// The TLS versions to accept (default: 1.3 and 1.2).
    pub fn with_versions(mut self, versions: &[TlsVersion]) -> ServerTlsConfig {
        self.versions = versions.to_vec();
        self.rebuilt()
    }

    /// Requires every client to present a certificate that chains to `roots`.
    pub fn require_client_certificate(mut self, roots: TrustRoots) -> ServerTlsConfig {
        self.client_auth = ClientAuth::Required(roots);
        self.rebuilt()
    }

    /// Asks clients for a certificate chaining to `roots`, but lets in clients without one.
    pub fn request_client_certificate(mut self, roots: TrustRoots) -> ServerTlsConfig {
        self.client_auth = ClientAuth::Optional(roots);
        self.rebuilt()
    }

    /// Sets how long a client has to complete the handshake before the connection is
    /// aborted (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: no limit). The connection's
    /// protocol then gets `connection_lost` with [`TlsError::HandshakeTimeout`](super::TlsError::HandshakeTimeout).
    pub fn with_handshake_timeout(mut self, timeout: Option<Duration>) -> ServerTlsConfig {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has to complete the handshake.
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.handshake_timeout
    }

    /// The rustls configuration, built on first use and shared by all clones of this
    /// configuration.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        if let Some(config) = self.built.get() {
            return Ok(config.clone());
        }
        let config = Arc::new(self.build()?);
        let _ = self.built.set(config.clone());
        Ok(config)
    }

    fn rebuilt(mut self) -> ServerTlsConfig {
        self.built = Arc::new(OnceLock::new());
        self
    }

    fn build(&self) -> Result<rustls::ServerConfig, Error> {
        if self.default.is_none() && self.by_name.is_empty() {
            return Err(Error::TlsConfig(
                "a TLS server needs at least one certificate".into(),
            ));
        }
        let versions = rustls_versions(&self.versions)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| Error::TlsConfig(format!("unusable TLS versions: {e}")))?;
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(roots) | ClientAuth::Required(roots) => {
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.store.clone(), provider());
                if matches!(self.client_auth, ClientAuth::Optional(_)) {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| Error::TlsConfig(format!("unusable client CA roots: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut resolver = SniResolver {
            default: self.default.as_ref().map(|i| i.certified.clone()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (name, identity) in &self.by_name {
            let key = identity.certified.clone();
            match name.strip_prefix("*.") {
                Some(parent) => resolver.wildcard.insert(parent.to_string(), key),
                None => resolver.exact.insert(name.clone(), key),
            };
        }
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("default", &self.default)
            .field(
                "sni_names",
                &self.by_name.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("alpn", &self.alpn)
            .field("versions", &self.versions)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// How a TLS client checks the server and presents itself: the name it expects (sent with
/// SNI and checked against the certificate), the roots it trusts (the system's by default),
/// an optional client certificate, ALPN protocols and versions.
///
/// Verification is always on unless
/// [`dangerous_accept_any_certificate`](Self::dangerous_accept_any_certificate) says
/// otherwise.
///
/// ```no_run
/// use twistor::tls::ClientTlsConfig;
///
/// let config = ClientTlsConfig::new("example.com")?
///     .with_trust_roots("/etc/myapp/ca.pem")?
///     .with_alpn(["http/1.1"]);
/// # Ok::<(), twistor::Error>(())
/// ```
///
/// Cloning is cheap; clones share the rustls configuration built from them (and so its
/// session cache), until a `with_*` method changes one of them.
#[derive(Clone)]
pub struct ClientTlsConfig {
    server_name: ServerName<'static>,
    roots: Option<TrustRoots>,
    identity: Option<Identity>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    accept_any_certificate: bool,
    handshake_timeout: Option<Duration>,
    built: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl ClientTlsConfig {
    /// A client expecting a certificate for `server_name` (a DNS name or an IP address),
    /// trusting the system's roots.
    pub fn new(server_name: &str) -> Result<ClientTlsConfig, Error> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| Error::TlsConfig(format!("invalid TLS server name {server_name:?}")))?;
        Ok(ClientTlsConfig {
            server_name,
            roots: None,
            identity: None,
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            accept_any_certificate: false,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            built: Arc::new(OnceLock::new()),
        })
    }

    /// Trusts the certificates in a PEM file or a directory of them instead of the system's
    /// (Twisted's `trustRoots=`); see [`TrustRoots::from_path`].
    pub fn with_trust_roots(self, path: impl AsRef<Path>) -> Result<ClientTlsConfig, Error> {
        Ok(self.with_roots(TrustRoots::from_path(path)?))
    }

    /// Trusts `roots` instead of the system's.
    pub fn with_roots(mut self, roots: TrustRoots) -> ClientTlsConfig {
        self.roots = Some(roots);
        self.rebuilt()
    }

    /// Presents the certificate in `certificate` (PEM, leaf first, chain after) with the key
    /// in `private_key` to servers that ask (Twisted's `certificate=` and `privateKey=`;
    /// pass the same path twice for a file holding both).
    pub fn with_client_certificate(
        self,
        certificate: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<ClientTlsConfig, Error> {
        let identity = Identity::from_pem_files(
            private_key.as_ref(),
            Some(certificate.as_ref()),
            None::<&Path>,
        )?;
        Ok(self.with_client_identity(identity))
    }

    /// Presents `identity` to servers that ask for a client certificate.
    pub fn with_client_identity(mut self, identity: Identity) -> ClientTlsConfig {
        self.identity = Some(identity);
        self.rebuilt()
    }

    /// Offers these ALPN protocols, most preferred first.
    pub fn with_alpn<I, S>(mut self, protocols: I) -> ClientTlsConfig
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self.rebuilt()
    }

    /// The TLS versions to offer (default: 1.3 and 1.2).
    pub fn with_versions(mut self, versions: &[TlsVersion]) -> ClientTlsConfig {
        self.versions = versions.to_vec();
        self.rebuilt()
    }

    /// **Turns certificate verification off**: any certificate, for any name, from anyone,
    /// is accepted, so an attacker in the path can read and change everything. Only for
    /// tests and for peers authenticated some other way. (The handshake signatures are
    /// still checked, so the server does hold the key of the certificate it shows.)
    pub fn dangerous_accept_any_certificate(mut self) -> ClientTlsConfig {
        self.accept_any_certificate = true;
        self.rebuilt()
    }

    /// Sets how long the server has to complete the handshake before the connection is
    /// aborted (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: no limit). The protocol then
    /// gets `connection_lost` with [`TlsError::HandshakeTimeout`](super::TlsError::HandshakeTimeout).
    pub fn with_handshake_timeout(mut self, timeout: Option<Duration>) -> ClientTlsConfig {
        self.handshake_timeout = timeout;
        self
    }

    /// How long the server has to complete the handshake.
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.handshake_timeout
    }

    /// The name the server is expected to have.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }

    pub(crate) fn rustls_server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    /// The rustls configuration, built on first use (loading the system roots then, unless
    /// other roots were given) and shared by all clones of this configuration.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(config) = self.built.get() {
            return Ok(config.clone());
        }
        let config = Arc::new(self.build()?);
        let _ = self.built.set(config.clone());
        Ok(config)
    }

    fn rebuilt(mut self) -> ClientTlsConfig {
        self.built = Arc::new(OnceLock::new());
        self
    }

    fn build(&self) -> Result<rustls::ClientConfig, Error> {
        let versions = rustls_versions(&self.versions)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| Error::TlsConfig(format!("unusable TLS versions: {e}")))?;
        let builder = if self.accept_any_certificate {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        } else {
            let roots = match &self.roots {
                Some(roots) => roots.clone(),
                None => TrustRoots::system()?,
            };
            builder.with_root_certificates(roots.store)
        };
        let mut config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|e| Error::TlsConfig(format!("unusable client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots)
            .field("identity", &self.identity)
            .field("alpn", &self.alpn)
            .field("versions", &self.versions)
            .field("accept_any_certificate", &self.accept_any_certificate)
            .finish()
    }
}

fn rustls_versions(
    versions: &[TlsVersion],
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, Error> {
    if versions.is_empty() {
        return Err(Error::TlsConfig("no TLS versions enabled".into()));
    }
    Ok(versions.iter().map(|v| v.rustls()).collect())
}

/// Chooses the server's certificate by the SNI name the client sent.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = client_hello.server_name() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(key) = self.exact.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.wildcard.get(parent)
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

/// The verifier behind [`ClientTlsConfig::dangerous_accept_any_certificate`].
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

fn file_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::TlsFile {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

fn pem_problem(path: &Path, what: &str, err: rustls::pki_types::pem::Error) -> Error {
    match err {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error(path, format!("no {what} found in PEM file"))
        }
        other => file_error(path, format!("malformed PEM ({what}): {other}")),
    }
}

fn certificates_from_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found in PEM file"));
    }
    Ok(certs)
}
