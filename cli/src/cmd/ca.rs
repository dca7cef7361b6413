//! `tether ca`: the fleet certificate authority.

use std::path::PathBuf;
use tether_net::tls::fleet::{self, FleetRole};

#[derive(clap::Subcommand, Debug)]
pub enum CaVerb {
    /// Make a CA in DIR (ca.crt, ca.key).
    Init {
        /// Directory of the CA.
        dir: PathBuf,
    },
    /// Issue a key and certificate for a node, a relay or a client.
    Issue(IssueArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["node", "relay", "client"])))]
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
            if [&a.node, &a.relay, &a.client]
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
            let (role, name) = match (a.node, a.relay, a.client) {
                (Some(n), _, _) => (FleetRole::Node, n),
                (_, Some(n), _) => (FleetRole::Relay, n),
                (_, _, Some(n)) => (
                    FleetRole::Client {
                        read_only: a.read_only,
                    },
                    n,
                ),
                _ => unreachable!("clap requires one role"),
            };
            let out = fleet::ca_issue(&a.dir, role, &name, a.out.as_deref())?;
            println!("{}", out.display());
        }
    }
    Ok(0)
}
