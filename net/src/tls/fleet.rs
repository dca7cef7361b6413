//! The fleet CA: certificates with roles, and the TLS checks that use
//! them.
//!
//! `tether ca init DIR` makes a CA key and certificate; `tether ca issue
//! DIR --node|--relay|--client NAME [--read-only]` issues a key and a
//! certificate whose subject alternative name says the role:
//! `NAME.node.tether`, `NAME.relay.tether`, `NAME.client.tether` or
//! `NAME.client-ro.tether`. A dialer names the peer it expects
//! (`n1.node.tether`), so a certificate of another role never passes for
//! it; an acceptor reads the role from the certificate and allows only the
//! roles it serves.
//!
//! Each certificate gets a random serial, recorded with its role and name
//! in the CA's `issued.json` ([`super::issued`]), so that `tether ca
//! revoke` can withdraw it; every verifier here then refuses it once the
//! member holds the CRL ([`super::revoke`]).

use super::revoke::Revocations;
use super::{issued, provider, Fingerprint, Signatures};
use crate::files::{create_private_dir, write_atomic};
use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Domain under which role names live.
pub const DOMAIN: &str = "tether";

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetRole {
    /// A host of sessions.
    Node,
    /// A relay.
    Relay,
    /// A person or program using sessions.
    Client {
        /// May only watch.
        read_only: bool,
    },
    /// A client with full rights over every session of the fleet (an
    /// operator's): sees, types into, kills and shares any session.
    Admin,
}

impl FleetRole {
    /// The role's word in certificate names: `node`, `relay`, `client`,
    /// `client-ro`, `admin`.
    pub fn label(&self) -> &'static str {
        match self {
            FleetRole::Node => "node",
            FleetRole::Relay => "relay",
            FleetRole::Client { read_only: false } => "client",
            FleetRole::Client { read_only: true } => "client-ro",
            FleetRole::Admin => "admin",
        }
    }

    /// Whether it is a client's role (an admin's included).
    pub fn is_client(&self) -> bool {
        matches!(self, FleetRole::Client { .. } | FleetRole::Admin)
    }

    /// The role of a [`FleetRole::label`].
    pub fn from_label(label: &str) -> Option<FleetRole> {
        Some(match label {
            "node" => FleetRole::Node,
            "relay" => FleetRole::Relay,
            "client" => FleetRole::Client { read_only: false },
            "client-ro" => FleetRole::Client { read_only: true },
            "admin" => FleetRole::Admin,
            _ => return None,
        })
    }
}

/// A fleet identity read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPeer {
    /// Role.
    pub role: FleetRole,
    /// Name given at issue.
    pub name: String,
}

impl std::fmt::Display for FleetPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role.label(), self.name)
    }
}

/// The DNS name a certificate of `role` and `name` carries.
pub fn dns_name(role: FleetRole, name: &str) -> String {
    format!("{name}.{}.{DOMAIN}", role.label())
}

/// Reads the role and name from a certificate.
pub fn peer_of(cert: &[u8]) -> Option<FleetPeer> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = c.subject_alternative_name().ok()??;
    for n in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::DNSName(d) = n {
            let Some(rest) = d.strip_suffix(&format!(".{DOMAIN}")) else {
                continue;
            };
            let Some((name, role)) = rest.rsplit_once('.') else {
                continue;
            };
            let Some(role) = FleetRole::from_label(role) else {
                continue;
            };
            return Some(FleetPeer {
                role,
                name: name.to_string(),
            });
        }
    }
    None
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !ok {
        bail!("'{name}' is not a valid fleet name: use 1 to 63 lowercase letters, digits and '-'");
    }
    Ok(())
}

/// When every certificate of the fleet CA expires (`notAfter`).
const NOT_AFTER: &str = "2036-01-01T00:00:00Z";

/// The CA's certificate (PEM) and key, from `dir`.
pub(crate) fn read_ca(dir: &Path) -> anyhow::Result<(String, rcgen::KeyPair)> {
    let ca_key_pem = std::fs::read_to_string(dir.join("ca.key")).with_context(|| {
        format!(
            "no CA in {}; make one with `tether ca init {}`",
            dir.display(),
            dir.display()
        )
    })?;
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt"))
        .with_context(|| format!("reading {}", dir.join("ca.crt").display()))?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).context("ca.key is corrupt")?;
    Ok((ca_pem, ca_key))
}

/// Makes a CA in `dir` (ca.crt, ca.key). Refuses to overwrite one.
pub fn ca_init(dir: &Path) -> anyhow::Result<()> {
    if dir.join("ca.key").exists() {
        bail!(
            "{} already holds a CA; issuing with it: `tether ca issue {} --node NAME`",
            dir.display(),
            dir.display()
        );
    }
    create_private_dir(dir)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tether fleet CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key)?;
    write_atomic(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
    write_atomic(&dir.join("ca.crt"), cert.pem().as_bytes())?;
    Ok(())
}

/// Issues a key and certificate for `name` in `role`, into `out` (default
/// `<ca dir>/<role>s/<name>/`): cert.pem, key.pem, ca.pem.
pub fn ca_issue(
    dir: &Path,
    role: FleetRole,
    name: &str,
    out: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    let (ca_pem, ca_key) = read_ca(dir)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.crt is corrupt")?;
    // Under the CA dir's lock: a serial no other certificate has, and the
    // record of the issue in issued.json (which `tether ca revoke` reads).
    let (key, cert) = issued::record(dir, |reg| {
        let key = rcgen::KeyPair::generate()?;
        let serial = reg.new_serial();
        let mut params = rcgen::CertificateParams::new(vec![dns_name(role, name)])?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{} {name}", role.label()),
        );
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        let rec = issued::Issued {
            serial: serial.to_string(),
            role: role.label().to_string(),
            name: name.to_string(),
            fingerprint: Fingerprint::of(cert.der().as_ref()).to_string(),
            issued_at: crate::time::rfc3339(std::time::SystemTime::now()),
            not_after: NOT_AFTER.to_string(),
            revoked_at: None,
        };
        Ok((rec, (key, cert)))
    })?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        let sub = match role {
            FleetRole::Node => "nodes",
            FleetRole::Relay => "relays",
            FleetRole::Client { .. } | FleetRole::Admin => "clients",
        };
        dir.join(sub).join(name)
    });
    create_private_dir(&out)?;
    write_atomic(&out.join("key.pem"), key.serialize_pem().as_bytes())?;
    write_atomic(&out.join("cert.pem"), cert.pem().as_bytes())?;
    write_atomic(&out.join("ca.pem"), ca_pem.as_bytes())?;
    Ok(out)
}

/// A member's fleet credentials: its key and certificate, the CA, and the
/// CA's revocation list in force. A clone shares the revocation list, so
/// every config built from any clone sees a CRL adopted later.
pub struct FleetTls {
    /// The CA certificate.
    pub ca: CertificateDer<'static>,
    /// This member's certificate.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// Role and name from the certificate.
    pub me: FleetPeer,
    /// The CRL in force (from `crl.pem` in the tls_dir, then gossip),
    /// consulted by every verifier built from this.
    pub revocations: Arc<Revocations>,
}

impl Clone for FleetTls {
    fn clone(&self) -> Self {
        FleetTls {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            me: self.me.clone(),
            revocations: self.revocations.clone(),
        }
    }
}

impl FleetTls {
    /// Reads cert.pem, key.pem, ca.pem and, if present, crl.pem from
    /// `dir`. Refuses a certificate that the CRL revokes.
    pub fn load(dir: &Path) -> anyhow::Result<FleetTls> {
        let hint = |f: &str| {
            format!(
                "reading {}; issue credentials with `tether ca issue CA_DIR --node|--relay|--client NAME --out {}`",
                dir.join(f).display(),
                dir.display()
            )
        };
        let cert = CertificateDer::from_pem_file(dir.join("cert.pem"))
            .with_context(|| hint("cert.pem"))?;
        let key =
            PrivateKeyDer::from_pem_file(dir.join("key.pem")).with_context(|| hint("key.pem"))?;
        let ca =
            CertificateDer::from_pem_file(dir.join("ca.pem")).with_context(|| hint("ca.pem"))?;
        let me = peer_of(cert.as_ref()).with_context(|| {
            format!(
                "{} has no tether role; issue it with `tether ca issue`",
                dir.join("cert.pem").display()
            )
        })?;
        let revocations = Arc::new(Revocations::load(ca.clone(), dir)?.with_own(cert.clone()));
        if let Some((serial, crl)) = revocations.revoked(cert.as_ref()) {
            bail!(
                "the certificate in {} ({me}, serial {serial}) is revoked by CRL number {crl} \
                 in {}; ask the fleet's operator for a new one (`tether ca issue CA_DIR --{} {}`)",
                dir.display(),
                dir.join(super::revoke::CRL_FILE).display(),
                match me.role {
                    FleetRole::Node => "node",
                    FleetRole::Relay => "relay",
                    FleetRole::Client { .. } => "client",
                    FleetRole::Admin => "admin",
                },
                me.name
            );
        }
        Ok(FleetTls {
            ca,
            cert,
            key,
            me,
            revocations,
        })
    }

    /// Fingerprint of this member's certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.cert.as_ref())
    }

    fn roots(&self) -> anyhow::Result<Arc<rustls::RootCertStore>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// The public key (SPKI DER) of this member's key.
    pub fn public_key(&self) -> anyhow::Result<Vec<u8>> {
        let (_, c) = x509_parser::parse_x509_certificate(self.cert.as_ref())
            .map_err(|e| anyhow::anyhow!("parsing the certificate: {e}"))?;
        Ok(c.public_key().raw.to_vec())
    }
}

/// Accepts a client certificate when it is pinned, or when it chains to
/// the fleet CA and its role is allowed.
#[derive(Debug)]
pub struct AcceptVerifier {
    pins: Vec<Fingerprint>,
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    /// The fleet's CRL, read at each handshake.
    revocations: Option<Arc<Revocations>>,
    allow: fn(&FleetRole) -> bool,
    sigs: Signatures,
}

impl AcceptVerifier {
    /// A verifier for pinned certificates and (with `fleet`) fleet roles
    /// whose certificates the fleet's CRL does not revoke.
    pub fn new(
        pins: Vec<Fingerprint>,
        fleet: Option<&FleetTls>,
        allow: fn(&FleetRole) -> bool,
    ) -> anyhow::Result<Self> {
        let provider = provider();
        let webpki = match fleet {
            Some(f) => Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    f.roots()?,
                    provider.clone(),
                )
                .build()?,
            ),
            None => None,
        };
        Ok(AcceptVerifier {
            pins,
            webpki,
            revocations: fleet.map(|f| f.revocations.clone()),
            allow,
            sigs: Signatures(provider),
        })
    }
}

impl ClientCertVerifier for AcceptVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pins.contains(&Fingerprint::of(end_entity.as_ref())) {
            return Ok(ClientCertVerified::assertion());
        }
        let Some(w) = &self.webpki else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        };
        w.verify_client_cert(end_entity, intermediates, now)?;
        if let Some(r) = &self.revocations {
            r.check(end_entity)?;
        }
        match peer_of(end_entity.as_ref()) {
            Some(p) if (self.allow)(&p.role) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
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

/// Verifies a dialed member: chains to the CA, carries the expected name
/// (which encodes the role), and, when gossip announced one, matches the
/// fingerprint pin.
#[derive(Debug)]
struct DialVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The fleet's CRL, read at each handshake.
    revocations: Arc<Revocations>,
    pin: Option<Fingerprint>,
    /// Accept any relay of the fleet, whatever its name.
    any_relay: bool,
}

impl ServerCertVerifier for DialVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.any_relay {
            // The name to check is the relay's own, read from the
            // certificate; its role must be relay.
            let bad =
                || rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
            let p = peer_of(end_entity.as_ref()).ok_or_else(bad)?;
            if p.role != FleetRole::Relay {
                return Err(bad());
            }
            let name = ServerName::try_from(dns_name(p.role, &p.name)).map_err(|_| bad())?;
            self.webpki
                .verify_server_cert(end_entity, intermediates, &name, ocsp, now)?;
            self.revocations.check(end_entity)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.revocations.check(end_entity)?;
        match self.pin {
            Some(p) if p != Fingerprint::of(end_entity.as_ref()) => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// QUIC client config to dial a fleet member by name, optionally pinned.
pub fn dial_config(me: &FleetTls, pin: Option<Fingerprint>) -> anyhow::Result<quinn::ClientConfig> {
    dial(me, pin, false)
}

/// QUIC client config to dial any relay of the fleet.
pub fn relay_dial_config(me: &FleetTls) -> anyhow::Result<quinn::ClientConfig> {
    dial(me, None, true)
}

fn dial(
    me: &FleetTls,
    pin: Option<Fingerprint>,
    any_relay: bool,
) -> anyhow::Result<quinn::ClientConfig> {
    let tls = client_tls(me, pin, any_relay)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let transport = match me.me.role {
        FleetRole::Client { .. } | FleetRole::Admin => crate::endpoint::client_transport(),
        FleetRole::Node | FleetRole::Relay => crate::endpoint::transport(),
    };
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// The rustls side of dialing a fleet member: TLS 1.3, this member's
/// certificate as the client's, the peer checked against the CA (and the
/// pin, when given). Used for QUIC and for TLS nested in a relayed stream.
pub fn client_tls(
    me: &FleetTls,
    pin: Option<Fingerprint>,
    any_relay: bool,
) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(me.roots()?, provider.clone())
            .build()?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DialVerifier {
            webpki,
            revocations: me.revocations.clone(),
            pin,
            any_relay,
        }))
        .with_client_auth_cert(vec![me.cert.clone()], me.key.clone_key())?;
    tls.alpn_protocols = vec![tether_proto::ALPN.to_vec()];
    Ok(tls)
}

/// QUIC server config of a fleet member: serves its fleet certificate and
/// accepts the pinned certificates and the fleet roles `allow` lets in.
pub fn accept_config(
    me: &FleetTls,
    pins: Vec<Fingerprint>,
    allow: fn(&FleetRole) -> bool,
) -> anyhow::Result<quinn::ServerConfig> {
    let tls = server_tls(me, pins, allow)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(crate::endpoint::server_transport()));
    Ok(cfg)
}

/// The rustls side of accepting fleet members: TLS 1.3, this member's
/// certificate, clients checked by [`AcceptVerifier`]. Used for QUIC and
/// for TLS nested in a relayed stream.
pub fn server_tls(
    me: &FleetTls,
    pins: Vec<Fingerprint>,
    allow: fn(&FleetRole) -> bool,
) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = Arc::new(AcceptVerifier::new(pins, Some(me), allow)?);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![me.cert.clone()], me.key.clone_key())?;
    tls.alpn_protocols = vec![tether_proto::ALPN.to_vec()];
    Ok(tls)
}

/// How often [`admitted`] looks at the connection.
const ADMISSION_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Waits until the server of a connection this end dialed has accepted
/// this end's certificate, or refused it. In TLS 1.3 the client's side of
/// the handshake ends before the server has checked the client's
/// certificate, so a refusal (a revoked certificate) would otherwise
/// surface as a broken connection at the first request. The server's
/// acceptance is its HANDSHAKE_DONE frame, about one round trip later;
/// quinn signals it by no event, only in the connection's counters.
pub async fn admitted(conn: &quinn::Connection) -> Result<(), quinn::ConnectionError> {
    let confirmed = async {
        while conn.stats().frame_rx.handshake_done == 0 {
            tokio::time::sleep(ADMISSION_POLL).await;
        }
    };
    tokio::select! {
        e = conn.closed() => Err(e),
        () = confirmed => Ok(()),
    }
}

/// The fleet identity of a QUIC connection's peer, if it presented a
/// fleet certificate.
pub fn peer_of_connection(conn: &quinn::Connection) -> Option<FleetPeer> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    peer_of(certs.first()?.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_read_roles() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        ca_init(&ca).unwrap();
        assert!(ca_init(&ca).unwrap_err().to_string().contains("already"));
        for (role, name) in [
            (FleetRole::Node, "n1"),
            (FleetRole::Relay, "r1"),
            (FleetRole::Client { read_only: false }, "alice"),
            (FleetRole::Client { read_only: true }, "bob"),
        ] {
            let out = ca_issue(&ca, role, name, None).unwrap();
            let t = FleetTls::load(&out).unwrap();
            assert_eq!(
                t.me,
                FleetPeer {
                    role,
                    name: name.into()
                }
            );
        }
        assert!(ca_issue(&ca, FleetRole::Node, "Bad Name", None).is_err());
        let e = ca_issue(&d.path().join("none"), FleetRole::Node, "x", None).unwrap_err();
        assert!(format!("{e:#}").contains("tether ca init"));
    }
}
