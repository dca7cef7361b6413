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

use super::{provider, Fingerprint, Signatures};
use crate::files::{create_private_dir, write_atomic};
use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tether_proto::NodeId;

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
        create_private_dir(&dir)?;
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
    let verifier = Arc::new(super::fleet::AcceptVerifier::new(
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
    cfg.transport_config(Arc::new(crate::endpoint::server_transport()));
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
    cfg.transport_config(Arc::new(crate::endpoint::client_transport()));
    Ok(cfg)
}
