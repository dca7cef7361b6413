//! TLS for every tether endpoint: certificate fingerprints (the pins),
//! the crypto provider, and the two ways a peer is trusted.
//!
//! - [`local`]: a node alone on its host. Its self-signed certificate and
//!   the local client's key live in the state dir; both ends pin each other
//!   by fingerprint, no CA involved.
//! - [`fleet`]: the fleet CA, certificates whose name carries a role
//!   (node, relay, client, read-only client), and the verifiers that check
//!   the role a dialer expects and an acceptor admits;
//! - [`issued`]: the CA's record of what it issued, and `tether ca revoke`,
//!   which signs the certificate revocation list (CRL);
//! - [`revoke`]: the CRL a fleet member holds, checked by every fleet
//!   verifier, spread by gossip, and the closing of revoked peers'
//!   connections.

use anyhow::bail;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

pub mod e2e;
pub mod fleet;
pub mod issued;
pub mod local;
pub mod revoke;
pub mod serial;

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

/// Fingerprint of the certificate a QUIC connection's peer presented.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    Some(Fingerprint::of(certs.first()?.as_ref()))
}
