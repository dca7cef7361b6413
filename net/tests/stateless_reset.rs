//! A member that dies without a word (SIGKILL) and starts again on the
//! same port resets the connections of its previous process: its
//! stateless-reset key derives from its private key
//! (`tether_net::endpoint::endpoint_config`), so the peer's connection is
//! closed as reset as soon as it sends, instead of hanging until its idle
//! timeout. A process with another key cannot do that.

use std::net::SocketAddr;
use std::time::Duration;
use tether_net::endpoint::{endpoint_config, make_endpoint, make_endpoint_with};
use tether_net::tls::fleet::{accept_config, ca_init, ca_issue, dial_config, FleetRole, FleetTls};

/// A fleet CA with node n1 and relay r1 (which dials n1, as relays do).
fn fleet() -> (tempfile::TempDir, FleetTls, FleetTls) {
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca");
    ca_init(&ca).unwrap();
    ca_issue(&ca, FleetRole::Node, "n1", None).unwrap();
    ca_issue(&ca, FleetRole::Relay, "r1", None).unwrap();
    let n1 = FleetTls::load(&ca.join("nodes/n1")).unwrap();
    let r1 = FleetTls::load(&ca.join("relays/r1")).unwrap();
    (d, n1, r1)
}

/// Serves `me` on `addr` from a runtime of its own, keeping every
/// connection open; dropping the runtime is the SIGKILL: its tasks stop
/// and its socket closes, and nothing is sent.
fn serve(
    me: &FleetTls,
    addr: SocketAddr,
    config: quinn::EndpointConfig,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = accept_config(me, vec![], |r| matches!(r, FleetRole::Relay)).unwrap();
    // The killed process's socket closes as its runtime winds down.
    let mut tries = 0;
    let ep = loop {
        match rt.block_on(async { make_endpoint_with(addr, Some(cfg.clone()), config.clone()) }) {
            Ok(ep) => break ep,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    let local = ep.local_addr().unwrap();
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Some(inc) = ep.accept().await {
            if let Ok(c) = inc.await {
                held.push(c);
            }
        }
    });
    (rt, local)
}

/// How the relay's connection to n1 ends once n1 was killed and a new
/// process took its port, with n1's reset key (`same_key`) or another.
async fn after_restart(same_key: bool) -> quinn::ConnectionError {
    let (_d, n1, r1) = fleet();
    let key = n1.key.secret_der().to_vec();
    let (n1b, k) = (n1.clone(), key.clone());
    let (first, addr) = tokio::task::spawn_blocking(move || {
        serve(&n1b, "127.0.0.1:0".parse().unwrap(), endpoint_config(&k))
    })
    .await
    .unwrap();
    let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let conn = ep
        .connect_with(dial_config(&r1, None).unwrap(), addr, "n1.node.tether")
        .unwrap()
        .await
        .unwrap();
    first.shutdown_background();
    let restarted = if same_key {
        endpoint_config(&key)
    } else {
        quinn::EndpointConfig::default()
    };
    let (second, _) = tokio::task::spawn_blocking(move || serve(&n1, addr, restarted))
        .await
        .unwrap();
    // The relay's keep-alives reach the new process; the connection ends
    // by itself either way (reset, or the idle timeout), bounded here.
    let e = tokio::time::timeout(Duration::from_secs(20), conn.closed())
        .await
        .expect("the connection ends by itself");
    second.shutdown_background();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_resets_the_old_connection() {
    let e = after_restart(true).await;
    assert!(matches!(e, quinn::ConnectionError::Reset), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_cannot_reset_it() {
    let e = after_restart(false).await;
    assert!(matches!(e, quinn::ConnectionError::TimedOut), "{e:?}");
}
