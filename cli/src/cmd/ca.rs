//! `tether ca`: the fleet certificate authority.

use crate::exit::usage;
use std::path::PathBuf;
use tether_net::tls::fleet::{self, FleetRole};
use tether_net::tls::issued::{self, RoleFilter, SelectError};

#[derive(clap::Subcommand, Debug)]
pub enum CaVerb {
    /// Make a CA in DIR (ca.crt, ca.key).
    Init {
        /// Directory of the CA.
        dir: PathBuf,
    },
    /// Issue a key and certificate for a node, a relay or a client.
    Issue(IssueArgs),
    /// Revoke certificates (by name or serial) and sign the revocation
    /// list DIR/crl.pem.
    Revoke(RevokeArgs),
}

/// `revoke TARGET`, or `revoke --node|--relay|--client NAME` as `issue`
/// takes it.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["target", "node", "relay", "client"])))]
pub struct RevokeArgs {
    /// Directory of the CA.
    pub dir: PathBuf,
    /// What to revoke: NAME (every certificate of that name), NAME.ROLE
    /// (`n2.node`, `bob.client-ro`), or a SERIAL in hex.
    pub target: Option<String>,
    /// The node NAME's certificates.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The relay NAME's certificates.
    #[arg(long, value_name = "NAME")]
    pub relay: Option<String>,
    /// The client NAME's certificates (read-write and read-only).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["node", "relay", "client", "admin"])))]
pub struct IssueArgs {
    /// Directory of the CA.
    pub dir: PathBuf,
    /// For the node NAME.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// For the relay NAME.
    #[arg(long, value_name = "NAME")]
    pub relay: Option<String>,
    /// For the client NAME.
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// The client may only watch (with --client).
    #[arg(long, requires = "client")]
    pub read_only: bool,
    /// For the admin client NAME: full rights over every session of the
    /// fleet, whoever owns it.
    #[arg(long, value_name = "NAME")]
    pub admin: Option<String>,
    /// Where to write cert.pem, key.pem, ca.pem (default DIR/<role>s/NAME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(v: CaVerb) -> anyhow::Result<i32> {
    match v {
        CaVerb::Init { dir } => {
            fleet::ca_init(&dir)?;
            println!("CA made in {}", dir.display());
        }
        CaVerb::Issue(a) => {
            // A `--relay` given before `ca` lands here too (clap fills the
            // global argument of that ID into this one).
            if [&a.node, &a.relay, &a.client, &a.admin]
                .iter()
                .filter(|r| r.is_some())
                .count()
                > 1
            {
                return Err(crate::exit::usage(
                    "give one of --node, --relay and --client, after `ca issue` (a --relay \
                     before `ca` counts too)",
                ));
            }
            let (role, name) = match (a.node, a.relay, a.client, a.admin) {
                (Some(n), _, _, _) => (FleetRole::Node, n),
                (_, Some(n), _, _) => (FleetRole::Relay, n),
                (_, _, Some(n), _) => (
                    FleetRole::Client {
                        read_only: a.read_only,
                    },
                    n,
                ),
                (_, _, _, Some(n)) => (FleetRole::Admin, n),
                _ => unreachable!("clap requires one role"),
            };
            let out = fleet::ca_issue(&a.dir, role, &name, a.out.as_deref())?;
            println!("{}", out.display());
        }
        CaVerb::Revoke(a) => revoke(a)?,
    }
    Ok(0)
}

fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let (target, filter) = match (a.target, a.node, a.relay, a.client) {
        (Some(t), ..) => (t, None),
        (_, Some(n), _, _) => (n, Some(RoleFilter::Node)),
        (_, _, Some(n), _) => (n, Some(RoleFilter::Relay)),
        (_, _, _, Some(n)) => (n, Some(RoleFilter::Client)),
        _ => unreachable!("clap requires a target"),
    };
    let r = issued::ca_revoke(&a.dir, &target, filter).map_err(|e| {
        // Naming nothing, or too much, is a usage error.
        match e.downcast::<SelectError>() {
            Ok(se) => usage(se.to_string()),
            Err(e) => e,
        }
    })?;
    for what in &r.now {
        println!("revoked {what}");
    }
    for what in &r.before {
        println!("already revoked: {what}");
    }
    println!(
        "revocation list number {} ({} revoked in all) written to {}",
        r.crl_number,
        r.total,
        r.path.display()
    );
    println!(
        "members get it: copy it into the tls_dir of any running node or relay; it spreads to\n\
         the others through gossip within a few rounds, and each keeps it in its own tls_dir.\n\
         Clients do not gossip: copy it into a client's tls_dir for it to refuse revoked relays."
    );
    Ok(())
}
