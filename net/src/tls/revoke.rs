//! Withdrawn identities: the fleet CA's certificate revocation list (CRL),
//! held by every member, consulted by every fleet verifier, spread by
//! gossip.
//!
//! # Flow
//! 1. The operator runs `tether ca revoke CA NAME|SERIAL`
//!    ([`super::issued::ca_revoke`]): the CA's `issued.json` names the
//!    certificates, and a CRL signed by the CA key, with the next CRL
//!    number, goes to `CA/crl.pem`.
//! 2. A member finds `crl.pem` in its tls_dir when it starts
//!    ([`Revocations::load`]: a corrupt or foreign file stops the start and
//!    says what to do), or, running, within a gossip interval of the file's
//!    being copied there ([`spread`]).
//! 3. Nodes and relays publish the CRL they hold under the gossip key
//!    [`GOSSIP_KEY`] and adopt a newer one seen at any member
//!    ([`Revocations::offer`]): parsed, issued and signed by the fleet CA,
//!    with a CRL number above the one in force; never an older or equal
//!    one, never an unsigned or foreign one. An adopted CRL applies at once
//!    and is written to `tls_dir/crl.pem`, so that a restart keeps it.
//! 4. Every verifier built from a [`FleetTls`](super::fleet::FleetTls)
//!    asks [`Revocations::check`] once the peer's chain is verified: a
//!    revoked peer's handshake fails with the TLS alert
//!    `certificate_revoked`. The CRL is read at each handshake, so configs
//!    built before it came apply it too.
//! 5. A connection accepted before the CRL came is served under
//!    [`Revocations::guard`], which closes it with [`REVOKED_CLOSE`] when a
//!    CRL that revokes its peer is applied, and logs who was cut and why.
//!
//! Gossip stays keyed by the cluster secret, not by certificates: a
//! revoked member may still gossip, but no member completes a handshake
//! with it. To expel it from gossip too, change the cluster secret.
//! A CRL's `nextUpdate` is not enforced: revocation here is final, and a
//! member keeps the newest CRL it has seen however old it is.

use crate::gossip::GossipHandle;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tracing::{debug, error, info, warn};

/// Name of the CRL file, in the CA dir and in each member's tls_dir.
pub const CRL_FILE: &str = "crl.pem";
/// Gossip key under which nodes and relays publish the CRL they hold:
/// `NUMBER:BASE64(DER)`.
pub const GOSSIP_KEY: &str = "crl";
/// Largest gossip value a member publishes. A chitchat key-value must fit
/// in one datagram (64 KiB, with the digest of every member beside it);
/// 32 KiB is a CRL of about 600 revoked certificates.
pub const MAX_GOSSIP_VALUE: usize = 32 * 1024;
/// QUIC application close code of a connection cut because its peer's
/// certificate was revoked.
pub const REVOKED_CLOSE: u32 = 0x5245; // "RE"
/// The close reason sent with [`REVOKED_CLOSE`].
pub const REVOKED_REASON: &[u8] = b"certificate revoked";

pub use super::serial::{BadSerial, Serial};

/// Why a CRL is refused.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The bytes are not a DER (or PEM) X.509 CRL.
    #[error("it is not a valid CRL ({0})")]
    Malformed(String),
    /// The fleet CA certificate itself cannot be read.
    #[error("the fleet CA certificate cannot be read ({0})")]
    Ca(String),
    /// The CRL names another issuer than the fleet CA.
    #[error("it was issued by another CA ({0}), not by this fleet's CA")]
    OtherIssuer(String),
    /// The signature does not verify with the fleet CA's key.
    #[error("its signature does not verify with this fleet's CA key")]
    BadSignature,
    /// The CRL has no CRL number, so it cannot be ordered.
    #[error("it has no CRL number")]
    NoNumber,
    /// The CRL number does not fit in 64 bits.
    #[error("its CRL number is larger than 64 bits")]
    NumberTooLarge,
}

/// A CRL of the fleet CA whose signature has been verified.
#[derive(Debug, Clone)]
pub struct Crl {
    number: u64,
    der: Vec<u8>,
    revoked: HashSet<Serial>,
    this_update: i64,
}

impl Crl {
    /// Parses a DER CRL and checks that the fleet CA `ca` issued and signed
    /// it.
    pub fn parse(der: &[u8], ca: &[u8]) -> Result<Crl, CrlError> {
        let (rest, crl) =
            x509_parser::parse_x509_crl(der).map_err(|e| CrlError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CrlError::Malformed("bytes after its end".into()));
        }
        let (_, ca) =
            x509_parser::parse_x509_certificate(ca).map_err(|e| CrlError::Ca(e.to_string()))?;
        if crl.tbs_cert_list.issuer.as_raw() != ca.tbs_certificate.subject.as_raw() {
            return Err(CrlError::OtherIssuer(crl.issuer().to_string()));
        }
        crl.verify_signature(ca.public_key())
            .map_err(|_| CrlError::BadSignature)?;
        let n = crl.crl_number().ok_or(CrlError::NoNumber)?.to_bytes_be();
        let n = Serial::from_bytes(&n);
        if n.as_bytes().len() > 8 {
            return Err(CrlError::NumberTooLarge);
        }
        let mut b = [0u8; 8];
        b[8 - n.as_bytes().len()..].copy_from_slice(n.as_bytes());
        Ok(Crl {
            number: u64::from_be_bytes(b),
            der: der.to_vec(),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| Serial::from_bytes(r.raw_serial()))
                .collect(),
            this_update: crl.last_update().timestamp(),
        })
    }

    /// Its CRL number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Its DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether it revokes `serial`.
    pub fn revokes(&self, serial: &Serial) -> bool {
        self.revoked.contains(serial)
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it revokes none.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// When it was made (its `thisUpdate`), seconds since the epoch.
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    /// As PEM (`-----BEGIN X509 CRL-----`).
    pub fn pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut out = String::from("-----BEGIN X509 CRL-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END X509 CRL-----\n");
        out
    }

    /// As the gossip value: `NUMBER:BASE64(DER)`.
    pub fn gossip_value(&self) -> String {
        format!(
            "{}:{}",
            self.number,
            base64::engine::general_purpose::STANDARD.encode(&self.der)
        )
    }
}

/// Reads a PEM CRL file into DER.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, CrlError> {
    let bytes = std::fs::read(path).map_err(|e| CrlError::Malformed(e.to_string()))?;
    CertificateRevocationListDer::from_pem_slice(&bytes)
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| CrlError::Malformed(format!("no PEM CRL in it: {e}")))
}

/// What [`Revocations::offer`] did with a valid CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// It was newer and is now in force.
    Adopted {
        /// Its CRL number.
        number: u64,
        /// The number of the one it replaced (0: none).
        previous: u64,
        /// How many certificates it revokes.
        revoked: usize,
    },
    /// It was not newer than the one in force, which stays.
    Kept {
        /// The number in force.
        held: u64,
        /// The number offered.
        offered: u64,
    },
}

/// The CRL a member holds, shared by every verifier built from its
/// [`FleetTls`](super::fleet::FleetTls) and replaced at run time without
/// rebuilding them. See the module's doc.
#[derive(Debug)]
pub struct Revocations {
    ca: CertificateDer<'static>,
    ca_subject: Vec<u8>,
    held: RwLock<Option<Arc<Crl>>>,
    file: Option<PathBuf>,
    /// This member's own certificate, to say so when a CRL revokes it.
    own: Option<CertificateDer<'static>>,
    changes: tokio::sync::watch::Sender<u64>,
    refused: AtomicU64,
    cut: AtomicU64,
}

impl Revocations {
    /// No CRL yet, for the fleet CA `ca`; an adopted CRL is written to
    /// `file` (by [`spread`]) when one is given.
    pub fn new(ca: CertificateDer<'static>, file: Option<PathBuf>) -> Result<Self, CrlError> {
        let (_, c) = x509_parser::parse_x509_certificate(ca.as_ref())
            .map_err(|e| CrlError::Ca(e.to_string()))?;
        let ca_subject = c.tbs_certificate.subject.as_raw().to_vec();
        Ok(Revocations {
            ca,
            ca_subject,
            held: RwLock::new(None),
            file,
            own: None,
            changes: tokio::sync::watch::Sender::new(0),
            refused: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        })
    }

    /// The revocations of the tls_dir `dir`: its `crl.pem` if there is one
    /// (none revoked if not). A file that is not a CRL of this fleet's CA
    /// is an error that says what to do.
    pub fn load(ca: CertificateDer<'static>, dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CRL_FILE);
        let r = Revocations::new(ca, Some(path.clone())).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; copy the CA's ca.crt there again",
                dir.join("ca.pem").display()
            )
        })?;
        if !path.exists() {
            return Ok(r);
        }
        let fix = || {
            format!(
                "copy the crl.pem that `tether ca revoke` wrote in the fleet's CA dir over it, \
                 or remove {} (members then learn the CRL through gossip)",
                path.display()
            )
        };
        let der = read_pem(&path)
            .map_err(|e| anyhow::anyhow!("{} is unusable: {e}; {}", path.display(), fix()))?;
        match r.offer(&der) {
            Ok(Offer::Adopted {
                number, revoked, ..
            }) => info!(crl = number, revoked, file = %path.display(), "revocation list in force"),
            Ok(Offer::Kept { .. }) => {}
            Err(e) => anyhow::bail!("{} is unusable: {e}; {}", path.display(), fix()),
        }
        Ok(r)
    }

    /// Names this member's own certificate, so that a CRL revoking it is
    /// reported as such.
    pub fn with_own(mut self, cert: CertificateDer<'static>) -> Self {
        self.own = Some(cert);
        self
    }

    /// Logs an error if the CRL in force revokes this member's own
    /// certificate: every other member refuses it now.
    fn report_own(&self) {
        let Some(own) = &self.own else { return };
        if let Some((serial, crl)) = self.revoked(own.as_ref()) {
            error!(
                me = %peer_name(own.as_ref()), %serial, crl,
                "this member's own certificate is revoked: every other member refuses it; \
                 issue it a new one with `tether ca issue` and restart it"
            );
        }
    }

    /// The file an adopted CRL is written to, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The CRL in force, if any.
    pub fn current(&self) -> Option<Arc<Crl>> {
        self.held.read().expect("revocations lock").clone()
    }

    /// The number of the CRL in force; 0 when none.
    pub fn number(&self) -> u64 {
        self.current().map_or(0, |c| c.number)
    }

    /// Verifies `der` against the fleet CA and puts it in force if its
    /// number is higher than the one in force. Every [`Revocations::guard`]
    /// then checks its connection.
    pub fn offer(&self, der: &[u8]) -> Result<Offer, CrlError> {
        let crl = Crl::parse(der, self.ca.as_ref())?;
        let mut held = self.held.write().expect("revocations lock");
        let previous = held.as_ref().map_or(0, |c| c.number);
        if held.is_some() && crl.number <= previous {
            return Ok(Offer::Kept {
                held: previous,
                offered: crl.number,
            });
        }
        let (number, revoked) = (crl.number, crl.len());
        *held = Some(Arc::new(crl));
        drop(held);
        self.changes.send_replace(number);
        Ok(Offer::Adopted {
            number,
            previous,
            revoked,
        })
    }

    /// The serial of `cert` and the number of the CRL in force, if that
    /// CRL revokes it. A certificate of another issuer (a local client's
    /// self-signed one) is never revoked here.
    pub fn revoked(&self, cert: &[u8]) -> Option<(Serial, u64)> {
        let crl = self.current()?;
        if crl.is_empty() {
            return None;
        }
        let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
        if c.tbs_certificate.issuer.as_raw() != self.ca_subject.as_slice() {
            return None;
        }
        let serial = Serial::from_bytes(c.tbs_certificate.raw_serial());
        crl.revokes(&serial).then_some((serial, crl.number))
    }

    /// The verifiers' check, once the chain is verified: refuses a revoked
    /// certificate with `certificate_revoked`, and counts it.
    pub fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match self.revoked(cert.as_ref()) {
            None => Ok(()),
            Some((serial, crl)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let who = peer_name(cert.as_ref());
                info!(peer = %who, %serial, crl, "refused a revoked certificate");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            }
        }
    }

    /// Handshakes refused because the peer's certificate is revoked.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed because a CRL revoked their peer.
    pub fn cut_total(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
    }

    /// A receiver that sees the number of each CRL put in force.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Closes `conn` with [`REVOKED_CLOSE`] if the CRL in force revokes its
    /// peer, and logs who was cut and why. Returns whether it did.
    pub fn cut_if_revoked(&self, conn: &quinn::Connection) -> bool {
        let Some(cert) = peer_cert(conn) else {
            return false;
        };
        let Some((serial, crl)) = self.revoked(cert.as_ref()) else {
            return false;
        };
        conn.close(REVOKED_CLOSE.into(), REVOKED_REASON);
        self.cut.fetch_add(1, Ordering::Relaxed);
        warn!(
            peer = %peer_name(cert.as_ref()),
            %serial,
            crl,
            remote = %conn.remote_address(),
            "closed a connection: its peer's certificate is revoked"
        );
        true
    }

    /// Runs `work` (the serving of `conn`) to its end; if meanwhile a CRL
    /// that revokes `conn`'s peer is put in force, closes `conn` (see
    /// [`Revocations::cut_if_revoked`]) and lets `work` end on the closed
    /// connection. The connection is held only while `work` runs.
    pub async fn guard<F: std::future::Future>(
        &self,
        conn: &quinn::Connection,
        work: F,
    ) -> F::Output {
        let mut changes = self.subscribe();
        changes.borrow_and_update();
        // A CRL put in force between the handshake and now.
        let mut watching = !self.cut_if_revoked(conn);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                changed = changes.changed(), if watching => {
                    watching = changed.is_ok() && !self.cut_if_revoked(conn);
                }
            }
        }
    }
}

/// Whether `e` says that the peer refused or cut this end because its
/// certificate is revoked: the TLS alert `certificate_revoked` during the
/// handshake, or a close with [`REVOKED_CLOSE`] later.
pub fn refused_as_revoked(e: &quinn::ConnectionError) -> bool {
    let alert = u8::from(rustls::AlertDescription::CertificateRevoked);
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            c.error_code == quinn::TransportErrorCode::crypto(alert)
        }
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code == REVOKED_CLOSE.into(),
        _ => false,
    }
}

/// The first certificate a QUIC connection's peer presented.
fn peer_cert(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().cloned()
}

/// `client alice`, or `unknown` for a certificate without a fleet role.
fn peer_name(cert: &[u8]) -> String {
    super::fleet::peer_of(cert).map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// Keeps a member's CRL current, every `every`, until dropped:
///
/// - notices a new `crl.pem` in its tls_dir (copied by the operator) and
///   puts it in force if it is newer;
/// - with `gossip`, publishes the CRL in force under [`GOSSIP_KEY`], and
///   adopts a newer one that any member publishes, writing it to the
///   tls_dir.
///
/// Never returns: run it as one of the member's supervised loops.
pub async fn spread(
    rev: Arc<Revocations>,
    gossip: Option<Arc<GossipHandle>>,
    every: Duration,
) -> anyhow::Result<()> {
    let mut s = Spread {
        rev,
        file_seen: None,
        published: 0,
        warned_size: 0,
        rejected: HashSet::new(),
    };
    // The first round reads the file again: a copy made since the start
    // is not missed, and the one loaded then is no news (not logged).
    loop {
        s.watch_file();
        if let Some(g) = &gossip {
            s.publish(g).await;
            s.adopt(g).await;
        }
        tokio::time::sleep(every).await;
    }
}

/// What identifies a version of a file: length, mtime, inode.
type Stamp = (u64, SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// At most this many bad gossip values are remembered (and not checked
/// again).
const MAX_REJECTED: usize = 64;

struct Spread {
    rev: Arc<Revocations>,
    file_seen: Option<Stamp>,
    published: u64,
    warned_size: u64,
    /// blake3 hashes of gossip values already found bad or not newer.
    rejected: HashSet<[u8; 32]>,
}

impl Spread {
    /// Puts in force a newer `crl.pem` the operator copied in.
    fn watch_file(&mut self) {
        let Some(path) = self.rev.file().map(Path::to_path_buf) else {
            return;
        };
        let now = stamp(&path);
        if now == self.file_seen {
            return;
        }
        self.file_seen = now;
        if now.is_none() {
            // Removed: what is in force stays (revocation is final).
            return;
        }
        let file = path.display().to_string();
        let offered = read_pem(&path).and_then(|der| self.rev.offer(&der));
        match offered {
            Ok(Offer::Adopted {
                number, revoked, ..
            }) => {
                info!(crl = number, revoked, %file, "revocation list from the tls_dir in force");
                self.rev.report_own();
            }
            Ok(Offer::Kept { held, offered }) if offered < held => {
                warn!(%file, offered, held, "crl.pem is older than the revocation list in force; writing the newer one over it");
                self.write_file();
            }
            Ok(Offer::Kept { .. }) => {}
            Err(err) => warn!(
                %file, %err,
                "ignoring crl.pem; copy the crl.pem of the fleet's CA dir (`tether ca revoke` writes it)"
            ),
        }
    }

    /// Publishes the CRL in force, once per new CRL.
    async fn publish(&mut self, g: &GossipHandle) {
        let Some(crl) = self.rev.current() else {
            return;
        };
        if crl.number == self.published {
            return;
        }
        let v = crl.gossip_value();
        if v.len() > MAX_GOSSIP_VALUE {
            if self.warned_size != crl.number {
                self.warned_size = crl.number;
                error!(
                    crl = crl.number,
                    bytes = v.len(),
                    max = MAX_GOSSIP_VALUE,
                    "the revocation list is too large to gossip; copy crl.pem into every member's tls_dir"
                );
            }
            return;
        }
        g.set_key(GOSSIP_KEY, v).await;
        self.published = crl.number;
        debug!(crl = crl.number, "revocation list published");
    }

    /// Adopts the newest valid CRL that any member publishes, if it is
    /// newer than the one in force.
    async fn adopt(&mut self, g: &GossipHandle) {
        let held = self.rev.number();
        let mut offers: Vec<(u64, String, String)> = g
            .values_of(GOSSIP_KEY)
            .await
            .into_iter()
            .filter_map(|(member, v)| {
                let n: u64 = v.split_once(':')?.0.parse().ok()?;
                (n > held).then_some((n, member, v))
            })
            .collect();
        offers.sort_by_key(|o| std::cmp::Reverse(o.0));
        for (claimed, member, v) in offers {
            let h = *blake3::hash(v.as_bytes()).as_bytes();
            if self.rejected.contains(&h) {
                continue;
            }
            let der = v
                .split_once(':')
                .and_then(|(_, b)| base64::engine::general_purpose::STANDARD.decode(b).ok());
            let offered = match der {
                Some(d) => self.rev.offer(&d),
                None => Err(CrlError::Malformed("bad base64".into())),
            };
            match offered {
                Ok(Offer::Adopted {
                    number,
                    previous,
                    revoked,
                }) => {
                    info!(crl = number, previous, revoked, from = %member, "adopted a newer revocation list from gossip");
                    self.rev.report_own();
                    self.write_file();
                    return;
                }
                Ok(Offer::Kept { held, offered }) => {
                    debug!(from = %member, claimed, offered, held, "gossiped revocation list is not newer");
                }
                Err(err) => {
                    warn!(from = %member, %err, "ignoring a revocation list published by gossip")
                }
            }
            if self.rejected.len() >= MAX_REJECTED {
                self.rejected.clear();
            }
            self.rejected.insert(h);
        }
    }

    /// Writes the CRL in force to the tls_dir, so that a restart keeps it.
    fn write_file(&mut self) {
        let (Some(path), Some(crl)) = (self.rev.file().map(Path::to_path_buf), self.rev.current())
        else {
            return;
        };
        match crate::files::write_atomic(&path, crl.pem().as_bytes()) {
            Ok(()) => self.file_seen = stamp(&path),
            Err(err) => warn!(
                file = %path.display(), err = %format!("{err:#}"),
                "cannot keep the revocation list in the tls_dir; it is in force until a restart"
            ),
        }
    }
}

#[cfg(test)]
#[path = "revoke_tests.rs"]
mod tests;
