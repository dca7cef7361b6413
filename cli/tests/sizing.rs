//! Several clients attached from windows of different sizes: the session
//! follows the client in front of it (`latest`), fits every `smallest`
//! client, and is never resized by a `fixed` or a read-only one.

use std::time::Duration;
use tether_client::OutputStream;
use tether_proto::{AttachSpec, Sizing, StartAt, WinSize};
use tether_testkit::{wait_until, TestNode};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(20);

fn ws(cols: u16, rows: u16) -> WinSize {
    WinSize { cols, rows }
}

async fn attach(
    node: &TestNode,
    id: &str,
    size: WinSize,
    sizing: Sizing,
    ro: bool,
) -> OutputStream {
    let spec = AttachSpec {
        size: Some(size),
        sizing,
        read_only: ro,
        ..AttachSpec::new(id, StartAt::End)
    };
    OutputStream::open(node.client().await, spec).await.unwrap()
}

fn expect(node: &TestNode, id: &str, want: WinSize) {
    wait_until(
        &format!("the session is {}x{}", want.cols, want.rows),
        T,
        || {
            let i = node.info(id);
            (i["cols"].as_u64(), i["rows"].as_u64())
                == (Some(want.cols.into()), Some(want.rows.into()))
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_follow_the_policy_of_each_client() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["cat"]);

    let mut a = attach(&node, &id, ws(100, 30), Sizing::Latest, false).await;
    expect(&node, &id, ws(100, 30));
    let b = attach(&node, &id, ws(80, 24), Sizing::Latest, false).await;
    expect(&node, &id, ws(80, 24));
    // The one typing is the one in front of the session.
    a.input(b"x").await.unwrap();
    expect(&node, &id, ws(100, 30));

    // Watchers and fixed clients never resize it.
    let ro = attach(&node, &id, ws(50, 10), Sizing::Latest, true).await;
    let fixed = attach(&node, &id, ws(40, 12), Sizing::Fixed, false).await;
    assert_eq!(node.info(&id)["clients"], 4);
    expect(&node, &id, ws(100, 30));

    // A smallest client: the session fits it, also when a latest one types.
    let d = attach(&node, &id, ws(90, 20), Sizing::Smallest, false).await;
    expect(&node, &id, ws(90, 20));
    a.input(b"y").await.unwrap();
    expect(&node, &id, ws(90, 20));
    d.detach().await;
    wait_until("the smallest client left", T, || {
        node.info(&id)["clients"] == 4
    });
    a.input(b"z").await.unwrap();
    expect(&node, &id, ws(100, 30));

    for s in [b, ro, fixed, a] {
        s.detach().await;
    }
}
