//! The CA's books: what `tether ca issue` issued (`issued.json` in the CA
//! dir), and `tether ca revoke`, which withdraws certificates by name or
//! serial and signs the revocation list (`crl.pem`).
//!
//! # Flow of a revocation
//! 1. [`select`] finds the certificates a target names: `NAME` (every
//!    certificate of that name, in the one role that has it), `NAME.ROLE`
//!    (`n2.node`, `bob.client-ro`), `NAME` with a role filter, or a
//!    `SERIAL` (hex). A bare name used in several roles is refused with
//!    the choices.
//! 2. They are marked revoked in `issued.json`, and the CRL number is
//!    raised.
//! 3. A CRL listing every certificate ever revoked, signed by the CA key,
//!    is written to `crl.pem` ([`super::revoke`] says how members get it).
//!
//! Every write is atomic, and a lock on the CA dir keeps two `tether ca`
//! runs from interleaving.

use super::fleet::FleetRole;
use super::revoke::{Crl, Serial, CRL_FILE};
use crate::files::write_atomic;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Name of the CA's record of issued certificates.
pub const ISSUED_FILE: &str = "issued.json";
/// How long a CRL says it is current (`nextUpdate`). Members do not
/// enforce it (see [`super::revoke`]); other readers of the CRL may.
const CRL_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Serial number, hex.
    pub serial: String,
    /// `node`, `relay`, `client` or `client-ro`.
    pub role: String,
    /// The name it was issued for.
    pub name: String,
    /// blake3 fingerprint of the certificate, hex.
    pub fingerprint: String,
    /// When it was issued, RFC 3339.
    pub issued_at: String,
    /// When it expires, RFC 3339.
    pub not_after: String,
    /// When it was revoked, RFC 3339; none while it is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl Issued {
    /// `NAME.ROLE`, the form a revoke target may take.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.name, self.role)
    }
}

/// A serial revoked without a record of its issue (a certificate issued
/// before the CA kept `issued.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSerial {
    /// Serial number, hex.
    pub serial: String,
    /// When it was revoked, RFC 3339.
    pub revoked_at: String,
}

/// The contents of `issued.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Number of the last CRL made (0: none yet).
    #[serde(default)]
    pub crl_number: u64,
    /// Every certificate issued, oldest first.
    #[serde(default)]
    pub certificates: Vec<Issued>,
    /// Serials revoked that were not recorded at issue.
    #[serde(default)]
    pub revoked_serials: Vec<RevokedSerial>,
}

impl Registry {
    /// Reads `DIR/issued.json`; empty when it does not exist.
    pub fn load(dir: &Path) -> anyhow::Result<Registry> {
        let p = dir.join(ISSUED_FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is corrupt; restore it from a backup of the CA dir (it lists what the CA issued)",
                    p.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", p.display()))),
        }
    }

    /// Writes `DIR/issued.json` atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomic(&dir.join(ISSUED_FILE), &serde_json::to_vec_pretty(self)?)
    }

    /// A serial that no recorded certificate has.
    pub fn new_serial(&self) -> Serial {
        loop {
            let s = Serial::random();
            let hex = s.to_string();
            if !self.certificates.iter().any(|c| c.serial == hex) {
                return s;
            }
        }
    }

    /// Every revoked serial.
    fn revoked(&self) -> Vec<(Serial, String)> {
        let recorded = self
            .certificates
            .iter()
            .filter_map(|c| Some((c.serial.as_str(), c.revoked_at.clone()?)));
        let other = self
            .revoked_serials
            .iter()
            .map(|r| (r.serial.as_str(), r.revoked_at.clone()));
        recorded
            .chain(other)
            .filter_map(|(s, at)| Some((s.parse().ok()?, at)))
            .collect()
    }
}

/// Takes the CA dir's lock (released on drop).
fn lock(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let p = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", p.display()))
}

/// Issues with `f` under the CA dir's lock (`f` sees what was issued
/// before, to pick a new serial) and records what it issued in
/// `DIR/issued.json`.
pub(crate) fn record<T>(
    dir: &Path,
    f: impl FnOnce(&Registry) -> anyhow::Result<(Issued, T)>,
) -> anyhow::Result<T> {
    let _lock = lock(dir)?;
    let mut reg = Registry::load(dir)?;
    let (issued, out) = f(&reg)?;
    reg.certificates.push(issued);
    reg.save(dir)?;
    Ok(out)
}

/// Which role a revoke target is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleFilter {
    /// Nodes.
    Node,
    /// Relays.
    Relay,
    /// Clients, read-write or read-only.
    Client,
}

impl RoleFilter {
    fn label(self) -> &'static str {
        match self {
            RoleFilter::Node => "node",
            RoleFilter::Relay => "relay",
            RoleFilter::Client => "client",
        }
    }

    fn admits(self, label: &str) -> bool {
        match self {
            RoleFilter::Node => label == "node",
            RoleFilter::Relay => label == "relay",
            RoleFilter::Client => label == "client" || label == "client-ro",
        }
    }
}

/// Why a revoke target names no certificate, or more than one identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    /// Nothing matches.
    #[error("no certificate issued by this CA matches '{target}'{known}; give a name from issued.json, NAME.ROLE, or a serial")]
    NotFound {
        /// The target given.
        target: String,
        /// `; known: a.node, b.client` (empty when none).
        known: String,
    },
    /// A bare name is used in several roles (or is also a serial).
    #[error("'{target}' is ambiguous: it could be {}; give one of these (or --node, --relay or --client NAME)", .choices.join(", "))]
    Ambiguous {
        /// The target given.
        target: String,
        /// What it could mean (`n2.node`, `n2.relay`, `serial 3f...`).
        choices: Vec<String>,
    },
    /// A role that tether does not know.
    #[error("'{0}' is not a role: use node, relay, client or client-ro")]
    BadRole(String),
}

/// What a target selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Recorded certificates, by index in [`Registry::certificates`].
    Recorded(Vec<usize>),
    /// A serial the CA did not record.
    Unrecorded(Serial),
}

/// Finds what `target` names in `reg` (see the module's doc).
pub fn select(
    reg: &Registry,
    target: &str,
    filter: Option<RoleFilter>,
) -> Result<Selection, SelectError> {
    let (name, role) = match target.split_once('.') {
        Some((n, r)) => {
            if FleetRole::from_label(r).is_none() {
                return Err(SelectError::BadRole(r.to_string()));
            }
            (n, Some(r))
        }
        None => (target, None),
    };
    let by_name: Vec<usize> = reg
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name == name)
        .filter(|(_, c)| role.is_none_or(|r| c.role == r))
        .filter(|(_, c)| filter.is_none_or(|f| f.admits(&c.role)))
        .map(|(i, _)| i)
        .collect();
    let serial: Option<Serial> = if role.is_none() {
        target.parse().ok()
    } else {
        None
    };
    let by_serial: Vec<usize> = match &serial {
        Some(s) => reg
            .certificates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.serial.parse::<Serial>().ok().as_ref() == Some(s))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let mut roles: Vec<String> = by_name
        .iter()
        .map(|&i| reg.certificates[i].qualified())
        .collect();
    roles.sort();
    roles.dedup();
    if !by_name.is_empty() && !by_serial.is_empty() {
        let mut choices = roles;
        choices.push(format!("serial {}", reg.certificates[by_serial[0]].serial));
        return Err(SelectError::Ambiguous {
            target: target.into(),
            choices,
        });
    }
    if roles.len() > 1 {
        return Err(SelectError::Ambiguous {
            target: target.into(),
            choices: roles,
        });
    }
    if !by_name.is_empty() {
        return Ok(Selection::Recorded(by_name));
    }
    if !by_serial.is_empty() {
        return Ok(Selection::Recorded(by_serial));
    }
    // A serial the CA did not record: long enough not to be a mistyped
    // name (rcgen's serials and ours are 16 to 20 bytes).
    match serial {
        Some(s) if s.as_bytes().len() >= 8 && filter.is_none() => Ok(Selection::Unrecorded(s)),
        _ => {
            let mut known: Vec<String> = reg.certificates.iter().map(Issued::qualified).collect();
            known.sort();
            known.dedup();
            let known = if known.is_empty() {
                String::new()
            } else {
                format!("; known: {}", known.join(", "))
            };
            let target = match filter {
                Some(f) => format!("{target}' as a '{}", f.label()),
                None => target.into(),
            };
            Err(SelectError::NotFound { target, known })
        }
    }
}

/// What [`ca_revoke`] did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// Certificates revoked now: `client alice, serial 3f...`.
    pub now: Vec<String>,
    /// Certificates the target names that were revoked before.
    pub before: Vec<String>,
    /// The new CRL's number.
    pub crl_number: u64,
    /// How many certificates it revokes in all.
    pub total: usize,
    /// Where it went.
    pub path: PathBuf,
}

/// Revokes what `target` names (see [`select`]) and writes a new CRL,
/// signed by the CA key, to `DIR/crl.pem`.
pub fn ca_revoke(dir: &Path, target: &str, filter: Option<RoleFilter>) -> anyhow::Result<Revoked> {
    let (ca_pem, ca_key) = super::fleet::read_ca(dir)?;
    let _lock = lock(dir)?;
    let mut reg = Registry::load(dir)?;
    let sel = select(&reg, target, filter)?;
    let at = crate::time::rfc3339(SystemTime::now());
    let (mut now, mut before) = (Vec::new(), Vec::new());
    match sel {
        Selection::Recorded(idx) => {
            for i in idx {
                let c = &mut reg.certificates[i];
                let what = format!("{} {}, serial {}", c.role, c.name, c.serial);
                if c.revoked_at.is_some() {
                    before.push(what);
                } else {
                    c.revoked_at = Some(at.clone());
                    now.push(what);
                }
            }
        }
        Selection::Unrecorded(s) => {
            let hex = s.to_string();
            let what = format!("serial {hex} (not in issued.json)");
            if reg.revoked_serials.iter().any(|r| r.serial == hex) {
                before.push(what);
            } else {
                reg.revoked_serials.push(RevokedSerial {
                    serial: hex,
                    revoked_at: at.clone(),
                });
                now.push(what);
            }
        }
    }
    // Above any CRL made before, even if issued.json was restored from an
    // older backup: members never adopt a number they have seen.
    let path = dir.join(CRL_FILE);
    let on_disk = super::revoke::read_pem(&path)
        .ok()
        .and_then(|der| Crl::parse(&der, &pem_to_der(&ca_pem)?).ok())
        .map_or(0, |c| c.number());
    reg.crl_number = reg.crl_number.max(on_disk) + 1;
    let revoked = reg.revoked();
    reg.save(dir)?;
    let pem = sign_crl(&ca_pem, ca_key, reg.crl_number, &revoked)?;
    write_atomic(&path, pem.as_bytes())?;
    Ok(Revoked {
        now,
        before,
        crl_number: reg.crl_number,
        total: revoked.len(),
        path,
    })
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// A PEM CRL numbered `number` revoking `revoked`, signed by the CA.
fn sign_crl(
    ca_pem: &str,
    ca_key: rcgen::KeyPair,
    number: u64,
    revoked: &[(Serial, String)],
) -> anyhow::Result<String> {
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).context("ca.crt is corrupt")?;
    // rcgen takes `time`'s dates, which x509-parser makes for us.
    let datetime = |t: SystemTime| -> anyhow::Result<_> {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(x509_parser::time::ASN1Time::from_timestamp(secs)?.to_datetime())
    };
    let now = SystemTime::now();
    let revoked_certs = revoked
        .iter()
        .map(|(s, at)| {
            let t = humantime::parse_rfc3339(at).unwrap_or(now);
            Ok(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s.as_bytes()),
                revocation_time: datetime(t)?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = rcgen::CertificateRevocationListParams {
        this_update: datetime(now)?,
        next_update: datetime(now + CRL_VALIDITY)?,
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).context("signing the CRL")?;
    Ok(crl.pem()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::fleet::{ca_init, ca_issue, FleetTls};
    use crate::tls::revoke::{read_pem, CrlError, Offer, Revocations};

    fn serial_of(dir: &Path) -> Serial {
        let t = FleetTls::load(dir).unwrap();
        Serial::of_cert(t.cert.as_ref()).unwrap()
    }

    fn ca_der(ca: &Path) -> Vec<u8> {
        pem_to_der(&std::fs::read_to_string(ca.join("ca.crt")).unwrap()).unwrap()
    }

    #[test]
    fn issue_records_unique_random_serials() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        ca_init(&ca).unwrap();
        let mut serials = Vec::new();
        for i in 0..6 {
            let out = ca_issue(&ca, FleetRole::Node, &format!("n{i}"), None).unwrap();
            serials.push(serial_of(&out));
        }
        let reg = Registry::load(&ca).unwrap();
        assert_eq!(reg.certificates.len(), 6);
        for (s, c) in serials.iter().zip(&reg.certificates) {
            assert_eq!(s.as_bytes().len(), 16);
            assert_eq!(c.serial, s.to_string());
            assert_eq!(c.role, "node");
            assert!(c.revoked_at.is_none());
        }
        let fp = FleetTls::load(&ca.join("nodes/n0")).unwrap().fingerprint();
        assert_eq!(reg.certificates[0].fingerprint, fp.to_string());
        let mut unique = serials.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), serials.len());
    }

    #[test]
    fn revoke_by_name_and_serial_makes_a_signed_growing_crl() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        ca_init(&ca).unwrap();
        let client = FleetRole::Client { read_only: false };
        // alice holds two certificates; both go.
        let a1 = serial_of(&ca_issue(&ca, client, "alice", Some(&d.path().join("a1"))).unwrap());
        let a2 = serial_of(&ca_issue(&ca, client, "alice", Some(&d.path().join("a2"))).unwrap());
        let bob = serial_of(&ca_issue(&ca, client, "bob", None).unwrap());
        let carol = serial_of(&ca_issue(&ca, client, "carol", None).unwrap());

        let r = ca_revoke(&ca, "alice", None).unwrap();
        assert_eq!(r.now.len(), 2, "{:?}", r.now);
        assert_eq!((r.crl_number, r.total), (1, 2));
        assert_eq!(r.path, ca.join("crl.pem"));
        let crl = Crl::parse(&read_pem(&r.path).unwrap(), &ca_der(&ca)).unwrap();
        assert_eq!(crl.number(), 1);
        assert!(crl.revokes(&a1) && crl.revokes(&a2));
        assert!(!crl.revokes(&bob));

        // By serial, in any case and with colons.
        let colons: Vec<String> = bob.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let r = ca_revoke(&ca, &colons.join(":"), None).unwrap();
        assert_eq!(r.now, vec![format!("client bob, serial {bob}")]);
        let crl = Crl::parse(&read_pem(&r.path).unwrap(), &ca_der(&ca)).unwrap();
        assert_eq!((crl.number(), crl.len()), (2, 3));
        assert!(crl.revokes(&a1) && crl.revokes(&bob) && !crl.revokes(&carol));

        // Again: nothing new, but a new number all the same.
        let r = ca_revoke(&ca, "alice", None).unwrap();
        assert!(r.now.is_empty() && r.before.len() == 2);
        assert_eq!(r.crl_number, 3);

        // A serial the CA never recorded (issued before issued.json).
        let r = ca_revoke(&ca, "0123456789abcdef0123", None).unwrap();
        assert!(r.now[0].contains("not in issued.json"), "{:?}", r.now);
        let crl = Crl::parse(&read_pem(&r.path).unwrap(), &ca_der(&ca)).unwrap();
        assert!(crl.revokes(&"0123456789abcdef0123".parse().unwrap()));
        assert_eq!(crl.len(), 4);
        let reg = Registry::load(&ca).unwrap();
        assert_eq!(reg.crl_number, 4);
        assert!(
            reg.certificates
                .iter()
                .filter(|c| c.revoked_at.is_some())
                .count()
                == 3
        );

        // A member holding the CRL refuses to load a revoked identity.
        std::fs::copy(ca.join("crl.pem"), ca.join("clients/bob/crl.pem")).unwrap();
        let e = FleetTls::load(&ca.join("clients/bob")).err().unwrap();
        assert!(format!("{e:#}").contains("is revoked"), "{e:#}");
        std::fs::copy(ca.join("crl.pem"), ca.join("clients/carol/crl.pem")).unwrap();
        let carol_tls = FleetTls::load(&ca.join("clients/carol")).unwrap();
        assert_eq!(carol_tls.revocations.number(), 4);
    }

    #[test]
    fn a_bare_name_in_several_roles_is_refused_with_the_choices() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        ca_init(&ca).unwrap();
        ca_issue(&ca, FleetRole::Node, "n2", None).unwrap();
        ca_issue(&ca, FleetRole::Relay, "n2", None).unwrap();
        ca_issue(&ca, FleetRole::Client { read_only: true }, "bob", None).unwrap();
        let reg = Registry::load(&ca).unwrap();
        let e = select(&reg, "n2", None).unwrap_err();
        assert_eq!(
            e,
            SelectError::Ambiguous {
                target: "n2".into(),
                choices: vec!["n2.node".into(), "n2.relay".into()]
            }
        );
        assert!(e.to_string().contains("n2.node, n2.relay"), "{e}");
        let e = ca_revoke(&ca, "n2", None).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
        assert!(!ca.join("crl.pem").exists(), "nothing revoked");
        assert_eq!(
            select(&reg, "n2.node", None),
            Ok(Selection::Recorded(vec![0]))
        );
        assert_eq!(
            select(&reg, "n2", Some(RoleFilter::Relay)),
            Ok(Selection::Recorded(vec![1]))
        );
        // --client takes read-only clients too; a qualified name its role.
        assert_eq!(
            select(&reg, "bob", Some(RoleFilter::Client)),
            Ok(Selection::Recorded(vec![2]))
        );
        assert!(matches!(
            select(&reg, "bob.client", None),
            Err(SelectError::NotFound { .. })
        ));
        assert_eq!(
            select(&reg, "bob.client-ro", None),
            Ok(Selection::Recorded(vec![2]))
        );
        let e = select(&reg, "nobody", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("known: bob.client-ro, n2.node, n2.relay"),
            "{e}"
        );
        assert!(matches!(
            select(&reg, "n2.boss", None),
            Err(SelectError::BadRole(_))
        ));
        let r = ca_revoke(&ca, "n2.relay", None).unwrap();
        assert_eq!(r.now.len(), 1);
        assert!(r.now[0].starts_with("relay n2"), "{:?}", r.now);
    }

    #[test]
    fn crls_of_another_ca_and_older_crls_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (ca, other) = (d.path().join("ca"), d.path().join("other"));
        ca_init(&ca).unwrap();
        ca_init(&other).unwrap();
        ca_issue(&ca, FleetRole::Node, "n1", None).unwrap();
        ca_issue(&other, FleetRole::Node, "n1", None).unwrap();
        ca_revoke(&other, "n1", None).unwrap();
        let foreign = read_pem(&other.join("crl.pem")).unwrap();
        // Same CA name ("tether fleet CA"), another key: the signature
        // tells them apart.
        let e = Crl::parse(&foreign, &ca_der(&ca)).unwrap_err();
        assert!(matches!(e, CrlError::BadSignature), "{e:?}");
        std::fs::copy(other.join("crl.pem"), ca.join("nodes/n1/crl.pem")).unwrap();
        let e = FleetTls::load(&ca.join("nodes/n1")).err().unwrap();
        let e = format!("{e:#}");
        assert!(e.contains("does not verify") && e.contains("remove"), "{e}");
        std::fs::write(ca.join("nodes/n1/crl.pem"), "garbage").unwrap();
        let e = FleetTls::load(&ca.join("nodes/n1")).err().unwrap();
        assert!(format!("{e:#}").contains("not a valid CRL"), "{e:#}");
        std::fs::remove_file(ca.join("nodes/n1/crl.pem")).unwrap();

        // A CRL altered after signing.
        ca_issue(&ca, FleetRole::Node, "n2", None).unwrap();
        ca_revoke(&ca, "n2", None).unwrap();
        let first = read_pem(&ca.join("crl.pem")).unwrap();
        let mut bent = first.clone();
        let k = bent.len() - 80;
        bent[k] ^= 1;
        assert!(Crl::parse(&bent, &ca_der(&ca)).is_err());

        ca_revoke(&ca, "n1", None).unwrap();
        let second = read_pem(&ca.join("crl.pem")).unwrap();
        let rev = Revocations::new(ca_der(&ca).into(), None).unwrap();
        assert_eq!(rev.number(), 0);
        assert!(matches!(
            rev.offer(&second),
            Ok(Offer::Adopted {
                number: 2,
                previous: 0,
                revoked: 2
            })
        ));
        assert_eq!(
            rev.offer(&first).unwrap(),
            Offer::Kept {
                held: 2,
                offered: 1
            }
        );
        assert_eq!(
            rev.offer(&second).unwrap(),
            Offer::Kept {
                held: 2,
                offered: 2
            }
        );
        assert!(rev.offer(&foreign).is_err());
        assert_eq!(rev.number(), 2);
        let n1 = serial_of(&ca.join("nodes/n1"));
        assert!(rev.current().unwrap().revokes(&n1));
    }
}
