//! Node identity and TLS: the node's key and self-signed certificate, the
//! local client's key, and rustls configurations that pin them.
//!
//! On first start the node writes, in `<state>/identity/` (mode 0700, files
//! 0600): `node.key`, `node.crt`, `client.key`, `client.crt`, all DER. The
//! node ID is derived with blake3 from the node's public key; the
//! certificate fingerprint is the blake3 hash of the certificate. A local
//! client pins the node's fingerprint and proves it may use the node with
//! the client key, which only the state dir's owner can read: mutual TLS
//! with both ends pinned, no CA involved.

use crate::store::write_atomic;
use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tether_proto::NodeId;

/// blake3 hash of a certificate's DER, the pin of a peer.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl std::str::FromStr for Fingerprint {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            bail!("a fingerprint has 64 hex digits");
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| anyhow::anyhow!("a fingerprint has 64 hex digits"))?;
        }
        Ok(Fingerprint(out))
    }
}

impl Fingerprint {
    /// Fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        Fingerprint(*blake3::hash(cert_der).as_bytes())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A key and its certificate.
pub struct KeyCert {
    /// PKCS#8 private key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// Certificate.
    pub cert: CertificateDer<'static>,
    /// DER of the public key (SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
}

impl KeyCert {
    fn generate(name: &str) -> anyhow::Result<KeyCert> {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()])
            .context("generating a key")?;
        Ok(KeyCert {
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
            cert: ck.cert.der().clone(),
            public_key: rcgen::PublicKeyData::subject_public_key_info(&ck.signing_key),
        })
    }

    fn load(dir: &Path, stem: &str) -> anyhow::Result<Option<KeyCert>> {
        let kp = dir.join(format!("{stem}.key"));
        let cp = dir.join(format!("{stem}.crt"));
        if !kp.exists() && !cp.exists() {
            return Ok(None);
        }
        let key = std::fs::read(&kp).with_context(|| format!("reading {}", kp.display()))?;
        let cert = std::fs::read(&cp).with_context(|| format!("reading {}", cp.display()))?;
        let pair = rcgen::KeyPair::try_from(key.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "identity file {} is corrupt: move the identity dir {} away and start the node \
                 again to make a new identity",
                kp.display(),
                dir.display()
            )
        })?;
        if cert.is_empty() || cert[0] != 0x30 {
            bail!(
                "identity file {} is corrupt: move the identity dir {} away and start the node \
                 again to make a new identity",
                cp.display(),
                dir.display()
            );
        }
        Ok(Some(KeyCert {
            public_key: rcgen::PublicKeyData::subject_public_key_info(&pair),
            key: PrivatePkcs8KeyDer::from(key),
            cert: CertificateDer::from(cert),
        }))
    }

    fn save(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        write_atomic(
            &dir.join(format!("{stem}.key")),
            self.key.secret_pkcs8_der(),
        )?;
        write_atomic(&dir.join(format!("{stem}.crt")), self.cert.as_ref())?;
        Ok(())
    }

    /// Fingerprint of the certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.cert.as_ref())
    }
}

/// What a node needs to serve: its own identity and the local client's.
pub struct NodeIdentity {
    /// The node's key and certificate.
    pub node: KeyCert,
    /// The local client's key and certificate.
    pub client: KeyCert,
    /// Derived from the node's public key.
    pub node_id: NodeId,
}

/// Directory of the identity files.
pub fn identity_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("identity")
}

impl NodeIdentity {
    /// Loads the identity, making it on first start.
    pub fn load_or_create(state_dir: &Path) -> anyhow::Result<NodeIdentity> {
        let dir = identity_dir(state_dir);
        crate::store::create_private_dir(&dir)?;
        let node = match KeyCert::load(&dir, "node")? {
            Some(k) => k,
            None => {
                let k = KeyCert::generate("tether-node")?;
                k.save(&dir, "node")?;
                k
            }
        };
        let client = match KeyCert::load(&dir, "client")? {
            Some(k) => k,
            None => {
                let k = KeyCert::generate("tether-client")?;
                k.save(&dir, "client")?;
                k
            }
        };
        let node_id = NodeId::from_public_key(&node.public_key);
        Ok(NodeIdentity {
            node,
            client,
            node_id,
        })
    }
}

/// What a local client needs: its key and the node's pin.
pub struct ClientIdentity {
    /// The client's key and certificate.
    pub client: KeyCert,
    /// Fingerprint of the node's certificate.
    pub node_pin: Fingerprint,
}

impl ClientIdentity {
    /// Reads the client key from a node's state dir; `node_pin` is the
    /// fingerprint the running node published in its `node.json`.
    pub fn load(state_dir: &Path, node_pin: Fingerprint) -> anyhow::Result<ClientIdentity> {
        let dir = identity_dir(state_dir);
        let client = KeyCert::load(&dir, "client")?
            .with_context(|| format!("no client key in {}; start the node first", dir.display()))?;
        Ok(ClientIdentity { client, node_pin })
    }
}

/// The crypto provider of every tether endpoint (ring; aws-lc is not built).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Handshake signature checks with the provider's algorithms: the part of
/// a certificate verifier that does not depend on how it trusts.
#[derive(Debug)]
pub(crate) struct Signatures(pub(crate) Arc<CryptoProvider>);

impl Signatures {
    pub(crate) fn tls12(
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
    pub(crate) fn tls13(
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
    pub(crate) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A dialer's check of a node it reaches by a pinned fingerprint.
#[derive(Debug)]
struct Pinned {
    allowed: Fingerprint,
    sigs: Signatures,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Fingerprint::of(end_entity.as_ref()) == self.allowed {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.sigs.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.sigs.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.sigs.schemes()
    }
}

/// QUIC server configuration of a node: its certificate, and only the
/// local client certificate accepted.
pub fn server_config(id: &NodeIdentity) -> anyhow::Result<quinn::ServerConfig> {
    // A fleet acceptor with no fleet: only the pinned local client.
    let verifier = Arc::new(crate::fleet::AcceptVerifier::new(
        vec![id.client.fingerprint()],
        None,
        |_| false,
    )?);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![id.node.cert.clone()],
            PrivateKeyDer::Pkcs8(id.node.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![tether_proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport()));
    Ok(cfg)
}

/// QUIC client configuration for a local client: pins the node, presents
/// the client key.
pub fn client_config(id: &ClientIdentity) -> anyhow::Result<quinn::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        allowed: id.node_pin,
        sigs: Signatures(provider.clone()),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![id.client.cert.clone()],
            PrivateKeyDer::Pkcs8(id.client.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![tether_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport()));
    Ok(cfg)
}

/// QUIC transport settings shared by every tether endpoint.
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Many long-lived attach streams per connection; generous windows so
    // bulk output is not throttled by flow control on loopback.
    t.max_concurrent_bidi_streams(1024u32.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    // A peer that vanishes without closing (SIGKILL, a cable pulled) is
    // noticed within the idle timeout; keep-alives keep healthy idle
    // connections (an attach with no output) open.
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    t.max_idle_timeout(Some(
        std::time::Duration::from_secs(4)
            .try_into()
            .expect("4 s is a valid idle timeout"),
    ));
    // Let path MTU discovery go up to what loopback and jumbo-frame links
    // carry: far fewer packets (and crypto calls) per byte of output. On
    // ordinary paths discovery settles at the path's MTU.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Largest UDP payload MTU discovery may probe for.
const MAX_UDP_PAYLOAD: u16 = 65_000;
