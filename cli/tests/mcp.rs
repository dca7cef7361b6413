//! `tether mcp` driven by a real MCP client (rmcp's, over the child's
//! stdio) against a real node: tools, a shell session, `run`, paging by
//! offset, waiting for a prompt, the screen, errors and size limits.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;
use tether_testkit::{Fleet, FleetSpec, TestNode};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// The longest any one step may take.
const T: Duration = Duration::from_secs(30);

type Mcp = RunningService<RoleClient, ()>;

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(T, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {T:?}"))
}

/// Starts `tether --state-dir DIR mcp ARGS` and connects an MCP client to
/// it.
async fn start(node: &TestNode, args: &[&str]) -> Mcp {
    let mut cmd = tokio::process::Command::new(TETHER);
    cmd.arg("--state-dir")
        .arg(node.path())
        .arg("mcp")
        .args(args);
    connect(cmd).await
}

/// Spawns `cmd` (a `tether ... mcp`) and connects an MCP client to it.
/// The child is killed when the client is dropped (also on a panic).
async fn connect(mut cmd: tokio::process::Command) -> Mcp {
    cmd.kill_on_drop(true);
    let transport = TokioChildProcess::new(cmd).expect("spawning tether mcp");
    within("initialize", ().serve(transport))
        .await
        .expect("MCP handshake with tether mcp")
}

/// Calls a tool; the whole result.
async fn call_raw(mcp: &Mcp, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().expect("arguments are an object").clone());
    within(tool, mcp.call_tool(params))
        .await
        .unwrap_or_else(|e| panic!("{tool} {args}: protocol failure: {e}"))
}

fn text(r: &CallToolResult) -> &str {
    assert_eq!(r.content.len(), 1, "one content block: {r:?}");
    &r.content[0].as_text().expect("text content").text
}

/// Calls a tool that must succeed; its JSON answer.
async fn call(mcp: &Mcp, tool: &str, args: Value) -> Value {
    let r = call_raw(mcp, tool, args.clone()).await;
    assert_ne!(r.is_error, Some(true), "{tool} {args}: {}", text(&r));
    serde_json::from_str(text(&r)).unwrap_or_else(|e| panic!("{tool}: {e}: {}", text(&r)))
}

/// Calls a tool that must fail; its message.
async fn fails(mcp: &Mcp, tool: &str, args: Value) -> String {
    let r = call_raw(mcp, tool, args.clone()).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} {args} should fail: {}",
        text(&r)
    );
    text(&r).to_string()
}

/// Reads from `from` in pages of `max_bytes` until `more` is false; the
/// text and the offset reached.
async fn read_pages(
    mcp: &Mcp,
    id: &str,
    from: u64,
    max_bytes: usize,
    plain: bool,
) -> (String, u64) {
    let (mut all, mut at) = (String::new(), from);
    for _ in 0..10_000 {
        let r = call(
            mcp,
            "read",
            json!({"target": id, "from": at, "max_bytes": max_bytes, "plain": plain}),
        )
        .await;
        let data = r["data"].as_str().unwrap();
        assert!(data.len() <= max_bytes, "page of {} bytes: {r}", data.len());
        all.push_str(data);
        at = r["next"].as_u64().unwrap();
        if !r["more"].as_bool().unwrap() {
            return (all, at);
        }
    }
    panic!("paging never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drives_a_shell_through_mcp() {
    let node = TestNode::start(TETHER).unwrap();
    let mcp = start(&node, &[]).await;

    let tools = within("tools/list", mcp.list_all_tools()).await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        ["create", "kill", "list", "read", "run", "screen", "send", "wait"]
    );

    // A shell, its prompt.
    let created = call(
        &mcp,
        "create",
        json!({
            "command": ["bash", "--norc", "--noprofile"],
            "name": "mcp-shell",
            "env": {"HISTFILE": "/dev/null", "PS1": "mcp$ "},
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let start = created["offset"].as_u64().unwrap();
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "input": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "input", "{w}");
    let listed = call(&mcp, "list", json!({})).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["sessions"][0]["name"], "mcp-shell");

    // A command: its output and exit code.
    let r = call(
        &mcp,
        "run",
        json!({"target": "mcp-shell", "command": "echo hi; false", "timeout_secs": 20}),
    )
    .await;
    assert_eq!(r["output"].as_str().unwrap().trim(), "hi", "{r}");
    assert_eq!(r["exit_code"], 1, "{r}");
    assert_eq!(r["truncated"], false);
    assert!(
        r["from"].as_u64().unwrap() < r["to"].as_u64().unwrap(),
        "{r}"
    );
    // The prompt is back before paging, so that no output comes between.
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "input": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "input", "{w}");

    // Paging by offset: small pages join up to one big read, raw and plain.
    for (plain, page) in [(false, 16), (true, 64)] {
        let whole = call(
            &mcp,
            "read",
            json!({"target": id, "from": start, "plain": plain}),
        )
        .await;
        assert_eq!(whole["more"], false, "{whole}");
        let (paged, next) = read_pages(&mcp, &id, start, page, plain).await;
        assert_eq!(paged, whole["data"].as_str().unwrap(), "plain {plain}");
        assert_eq!(next, whole["next"].as_u64().unwrap());
        assert!(paged.contains("hi"), "{paged:?}");
    }

    // A program that asks: wait until it waits for input, see its prompt.
    let sent = call(
        &mcp,
        "send",
        json!({"target": id, "text": "read -p 'Name? ' x", "keys": ["Enter"]}),
    )
    .await;
    let asked_at = sent["offset"].as_u64().unwrap();
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "input": true, "from": asked_at, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "input", "{w}");
    assert!(w["offset"].as_u64().unwrap() > asked_at, "{w}");
    let s = call(&mcp, "screen", json!({"target": id})).await;
    let lines: Vec<&str> = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(lines.iter().any(|l| l.contains("Name? ")), "{s}");
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(120), Some(40))
    );
    assert!(s["cursor"]["row"].is_u64(), "{s}");
    call(
        &mcp,
        "send",
        json!({"target": id, "text": "tether", "keys": ["Enter"]}),
    )
    .await;
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "pattern": "^mcp\\$ ", "from": asked_at, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "matched", "{w}");
    let r = call(
        &mcp,
        "run",
        json!({"target": id, "command": "echo \"got $x\"", "timeout_secs": 20}),
    )
    .await;
    assert_eq!(r["output"].as_str().unwrap().trim(), "got tether", "{r}");
    assert_eq!(r["exit_code"], 0);

    // Commands back to back: each finds the shell at its prompt again.
    for i in 0..5 {
        let r = call(
            &mcp,
            "run",
            json!({"target": id, "command": format!("echo n{i}"), "timeout_secs": 20}),
        )
        .await;
        assert_eq!(r["output"].as_str().unwrap().trim(), format!("n{i}"), "{r}");
    }

    // Long output is cut to fit, says so, and reads on by offset.
    let r = call(
        &mcp,
        "run",
        json!({"target": id, "command": "seq 1 2000", "max_bytes": 1000, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(r["truncated"], true, "{r}");
    assert_eq!(r["exit_code"], 0);
    let output = r["output"].as_str().unwrap();
    assert!(output.len() <= 1000 && output.starts_with("1\n2\n"), "{r}");
    let next = r["next"].as_u64().unwrap();
    let to = r["to"].as_u64().unwrap();
    let rest = call(
        &mcp,
        "read",
        json!({"target": id, "from": next, "max_bytes": to - next}),
    )
    .await;
    let all = format!("{output}{}", rest["data"].as_str().unwrap());
    let want: String = (1..=2000).map(|n| format!("{n}\n")).collect();
    assert_eq!(all, want);

    // Errors are tool errors that say what to do.
    let e = fails(&mcp, "read", json!({"target": "no-such-session"})).await;
    assert!(e.starts_with("not_found:") && e.contains("list"), "{e}");
    let e = fails(&mcp, "wait", json!({"target": id, "pattern": "("})).await;
    assert!(e.contains("regular expression"), "{e}");
    let e = fails(&mcp, "wait", json!({"target": id, "timeout": 1})).await;
    assert!(e.contains("unknown field `timeout`"), "{e}");
    let e = fails(&mcp, "send", json!({"target": id, "keys": ["C-nope"]})).await;
    assert!(!e.is_empty());
    call(
        &mcp,
        "send",
        json!({"target": id, "text": "cat", "keys": ["Enter"]}),
    )
    .await;
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "input": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["foreground"]["name"], "cat", "{w}");
    let e = fails(&mcp, "run", json!({"target": id, "command": "echo no"})).await;
    assert!(e.contains("cat") && e.contains("prompt"), "{e}");

    // Kill: the session ends with the signal.
    let k = call(&mcp, "kill", json!({"target": id, "signal": "KILL"})).await;
    assert_eq!(k["signal"], 9);
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "exit": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "exited", "{w}");
    assert_eq!(w["exit_code"], 128 + 9, "{w}");

    within("closing", mcp.cancel()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stay_under_the_servers_limit() {
    let node = TestNode::start(TETHER).unwrap();
    let mcp = start(&node, &["--max-answer-bytes", "2000"]).await;
    // Output full of escape sequences and line ends, which JSON escapes.
    let created = call(
        &mcp,
        "create",
        json!({"command": ["sh", "-c", "i=0; while [ $i -lt 400 ]; do printf '\\033[1m\"%d\"\\033[0m\\n' $i; i=$((i+1)); done"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "exit": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["exit_code"], 0, "{w}");
    let want: String = (0..400).map(|n| format!("\"{n}\"\n")).collect();
    for plain in [false, true] {
        let (mut got, mut at) = (String::new(), 0);
        loop {
            let r = call_raw(
                &mcp,
                "read",
                json!({"target": id, "from": at, "plain": plain}),
            )
            .await;
            assert!(text(&r).len() <= 2000, "{} bytes", text(&r).len());
            let v: Value = serde_json::from_str(text(&r)).unwrap();
            got.push_str(v["data"].as_str().unwrap());
            at = v["next"].as_u64().unwrap();
            if v["more"] == false {
                break;
            }
            assert!(v["note"].as_str().unwrap().contains("more output"), "{v}");
        }
        if plain {
            assert_eq!(got, want);
        } else {
            assert_eq!(got.matches("\x1b[1m").count(), 400);
        }
    }
    let listed = call_raw(&mcp, "list", json!({})).await;
    assert!(text(&listed).len() <= 2000);
    within("closing", mcp.cancel()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_relay() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 121),
        1,
        Ipv4Addr::new(127, 0, 0, 131),
        1,
    )
    .client("agent");
    let fleet = tokio::task::block_in_place(|| Fleet::start(TETHER, &spec)).unwrap();
    let mut cmd = tokio::process::Command::new(TETHER);
    cmd.args(fleet.files().client_args(&[0], "agent"))
        .arg("mcp");
    let mcp = connect(cmd).await;

    let created = call(
        &mcp,
        "create",
        json!({
            "command": ["bash", "--norc", "--noprofile"],
            "node": "n1",
            "env": {"HISTFILE": "/dev/null"},
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "input": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "input", "{w}");
    let r = call(
        &mcp,
        "run",
        json!({"target": id, "command": "echo via-relay; (exit 3)", "timeout_secs": 20}),
    )
    .await;
    assert_eq!(r["output"].as_str().unwrap().trim(), "via-relay", "{r}");
    assert_eq!(r["exit_code"], 3);
    let page = call(
        &mcp,
        "read",
        json!({"target": id, "from": r["from"], "max_bytes": 4}),
    )
    .await;
    assert_eq!(
        (page["data"].as_str(), page["more"].as_bool()),
        (Some("via-"), Some(true))
    );
    let listed = call(&mcp, "list", json!({})).await;
    assert_eq!(listed["sessions"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["sessions"][0]["node"], "n1", "{listed}");
    let k = call(&mcp, "kill", json!({"target": id})).await;
    assert_eq!(k["signal"], 1, "HUP by default: {k}");
    let w = call(
        &mcp,
        "wait",
        json!({"target": id, "exit": true, "timeout_secs": 20}),
    )
    .await;
    assert_eq!(w["reason"], "exited", "{w}");
    within("closing", mcp.cancel()).await.unwrap();
}

/// The server shares one connection between its calls: reading, waiting
/// and running over QUIC (as through a relay) must leave it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_calls_leave_the_shared_connection_open() {
    use tether_client::agent::{self, Until};
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["sh", "-c", "echo ready; exec cat"]);
    let c = node.client_quic().await;
    let w = within(
        "wait",
        agent::wait(
            &c,
            &id,
            Until::Pattern(regex::Regex::new("ready").unwrap()),
            Some(tether_proto::Offset(0)),
            Some(T),
        ),
    )
    .await
    .unwrap();
    assert_eq!(w.why, agent::Why::Matched);
    for _ in 0..2 {
        let r = within("read", agent::read(&c, &id, None, 3, true))
            .await
            .unwrap();
        assert_eq!(r.data, b"rea");
    }
    let info = within("info", c.info(&id)).await.unwrap();
    assert_eq!(info.id.to_string(), id);
}
