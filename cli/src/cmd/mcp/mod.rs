//! `tether mcp`: the Model Context Protocol on stdio, so that an AI agent
//! drives tether sessions with tools: `list`, `create`, `send`, `read`,
//! `wait`, `screen`, `run`, `kill`. Each is a thin shell over the client
//! library ([`tether_client::agent`] and [`Client`]); this module adds the
//! tool descriptions, the answers' size limits and the error messages.
//!
//! Protocol flow:
//! 1. The MCP client starts `tether [--state-dir|--relay ...] mcp` and
//!    speaks JSON-RPC on its stdin and stdout (logs go to stderr).
//! 2. `initialize`: the server answers with its tools and a short guide.
//! 3. `tools/call`, any number, concurrently: each asks the node (or the
//!    fleet) and answers one JSON object as text, or a tool error whose
//!    text says what went wrong and what to do.
//! 4. The client closes stdin; the server ends.
//!
//! Answers are kept under `--max-answer-bytes`, and output under a call's
//! own `max_bytes`: an answer cut to fit says so (`more`, `truncated`,
//! `next_start`, `first_row`) and gives the offset to go on from.

mod fit;
mod schema;

use crate::cmd::parse_signal;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use schema::*;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tether_client::agent::{self, Until};
use tether_client::{Client, ClientError, Dial};
use tether_proto::{CreateSpec, ErrorKind, Foreground, Offset, SessionInfo, WinSize};

/// Default of `--max-answer-bytes`: well inside what an agent's context
/// takes from one tool call.
const DEFAULT_MAX_ANSWER: usize = 30_000;
/// The smallest `--max-answer-bytes`: an answer without output fits.
const MIN_MAX_ANSWER: usize = 2_000;
/// `wait` gives up after this long unless told otherwise.
const DEFAULT_WAIT_SECS: f64 = 30.0;
/// `run` gives up after this long unless told otherwise.
const DEFAULT_RUN_SECS: f64 = 60.0;
/// Window size of a session `create` starts, unless told otherwise.
const DEFAULT_SIZE: WinSize = WinSize {
    cols: 120,
    rows: 40,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep every answer under this many bytes (JSON text); longer output
    /// is cut, and the answer says so and where to go on.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ANSWER,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(MIN_MAX_ANSWER as u64..))]
    pub max_answer_bytes: usize,
}

/// Serves MCP on stdin and stdout until the client closes them.
pub async fn run(dial: Dial, a: Args) -> anyhow::Result<i32> {
    let server = Server::new(dial, a.max_answer_bytes);
    // Connect now, so that the first call does not wait for it (and a
    // local node is started); a failure is retried at each call.
    if let Err(e) = server.conn.client().await {
        tracing::warn!(err = %e, "not connected yet; every tool call tries again");
    }
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("starting the MCP session on stdio: {e}"))?;
    let quit = running.waiting().await;
    tracing::debug!(?quit, "MCP session ended");
    Ok(crate::exit::OK)
}

/// The connection to the node or fleet, made again after it broke.
struct Conn {
    dial: Dial,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Conn {
    async fn client(&self) -> Result<Client, ClientError> {
        let mut c = self.client.lock().await;
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let new = self.dial.connect(0).await?;
        *c = Some(new.clone());
        Ok(new)
    }

    /// After `e`: a broken connection is let go (not closed: calls under
    /// way on it end by themselves), and the next call dials again.
    async fn after(&self, e: &ClientError) {
        if e.is_resumable() {
            self.client.lock().await.take();
        }
    }
}

/// Why a tool call failed: the text the caller gets.
enum Failure {
    /// The node, relay or connection said no.
    Client(ClientError),
    /// The arguments do not make sense.
    Usage(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// The text of a failed call: the library's message (what happened, what
/// to do), the kind of refusal first, and the tool to call where the
/// message names a CLI verb.
fn describe(e: &ClientError) -> String {
    let Some(kind) = e.kind() else {
        let mut s = e.to_string();
        if e.is_resumable() {
            s.push_str(" (the next call connects again)");
        }
        return s;
    };
    let name = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "error".into());
    let hint = match kind {
        ErrorKind::NotFound => " (call `list` for the sessions this client sees)",
        ErrorKind::Ambiguous => " (give more characters of the ID, or the full ID from `list`)",
        _ => "",
    };
    format!("{name}: {e}{hint}")
}

/// A tool's arguments, read by serde: a mistake is a tool error the
/// caller can act on, not a protocol failure.
fn args<T: DeserializeOwned>(a: JsonObject) -> Result<T, Failure> {
    serde_json::from_value(Value::Object(a)).map_err(|e| usage(format!("bad arguments: {e}")))
}

/// A tool's input schema, from its arguments type.
fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|e| panic!("input schema of {}: {e}", std::any::type_name::<T>()))
}

fn seconds(secs: f64, what: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        usage(format!(
            "{what} {secs}: give a number of seconds, 0 or more"
        ))
    })
}

fn foreground_json(f: &Foreground) -> Value {
    json!({"pid": f.pid, "name": f.name})
}

/// One session in `list`.
fn session_json(s: &SessionInfo) -> Value {
    let mut v = json!({
        "id": s.id.to_string(),
        "name": s.name,
        "state": s.state.to_string(),
        "exit_code": s.exit.map(|e| e.shell_code()),
        "command": tether_proto::gossip::short_command(&s.command),
        "cwd": s.cwd,
        "start_offset": s.start_offset.0,
        "end_offset": s.end_offset.0,
        "awaiting_input": s.awaiting_input,
        "foreground": s.foreground.as_ref().map(|f| f.name.clone()),
    });
    if let Some(n) = &s.node_name {
        v["node"] = json!(n);
    }
    if let Some(u) = &s.unreachable {
        v["unreachable"] = json!(u);
    }
    v
}

/// The MCP server: one connection, shared by every call.
pub struct Server {
    conn: Conn,
    /// Most bytes of an answer.
    limit: usize,
    tool_router: ToolRouter<Server>,
}

#[tool_router]
impl Server {
    fn new(dial: Dial, limit: usize) -> Server {
        Server {
            conn: Conn {
                dial,
                client: tokio::sync::Mutex::new(None),
            },
            limit: limit.max(MIN_MAX_ANSWER),
            tool_router: Server::tool_router(),
        }
    }

    /// The answer to a call: its JSON as text, or a tool error.
    async fn answer(&self, r: Result<Value, Failure>) -> CallToolResult {
        match r {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]),
            Err(f) => {
                let text = match f {
                    Failure::Client(e) => {
                        self.conn.after(&e).await;
                        describe(&e)
                    }
                    Failure::Usage(m) => m,
                };
                CallToolResult::error(vec![ContentBlock::text(text)])
            }
        }
    }

    /// The most bytes of output for a call that asked for `max_bytes`.
    fn cap(&self, max_bytes: Option<usize>) -> usize {
        max_bytes.unwrap_or(self.limit).clamp(1, self.limit)
    }

    #[tool(name = "list", description = LIST, input_schema = schema::<ListArgs>(),
           annotations(read_only_hint = true, open_world_hint = false))]
    async fn list(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_list(a).await).await
    }

    #[tool(name = "create", description = CREATE, input_schema = schema::<CreateArgs>())]
    async fn create(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_create(a).await).await
    }

    #[tool(name = "send", description = SEND, input_schema = schema::<SendArgs>())]
    async fn send(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_send(a).await).await
    }

    #[tool(name = "read", description = READ, input_schema = schema::<ReadArgs>(),
           annotations(read_only_hint = true, open_world_hint = false))]
    async fn read(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_read(a).await).await
    }

    #[tool(name = "wait", description = WAIT, input_schema = schema::<WaitArgs>(),
           annotations(read_only_hint = true, open_world_hint = false))]
    async fn wait(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_wait(a).await).await
    }

    #[tool(name = "screen", description = SCREEN, input_schema = schema::<ScreenArgs>(),
           annotations(read_only_hint = true, open_world_hint = false))]
    async fn screen(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_screen(a).await).await
    }

    #[tool(name = "run", description = RUN, input_schema = schema::<RunArgs>())]
    async fn run(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_run(a).await).await
    }

    #[tool(name = "kill", description = KILL, input_schema = schema::<KillArgs>(),
           annotations(destructive_hint = true, open_world_hint = false))]
    async fn kill(&self, a: JsonObject) -> CallToolResult {
        self.answer(self.do_kill(a).await).await
    }
}

impl Server {
    async fn do_list(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: ListArgs = args(a)?;
        let c = self.conn.client().await?;
        let mut sessions = c.list().await?;
        sessions.sort_by(|x, y| {
            (x.created_at_ms, x.id.to_string()).cmp(&(y.created_at_ms, y.id.to_string()))
        });
        let total = sessions.len();
        let start = a.start.unwrap_or(0).min(total);
        let items: Vec<Value> = sessions[start..].iter().map(session_json).collect();
        let build = |k: usize| {
            let mut v = json!({"sessions": items[..k], "total": total});
            if start + k < total {
                v["next_start"] = json!(start + k);
                v["note"] = json!(format!(
                    "cut to fit: sessions {start}..{} of {total} shown; call list with start = {} for the rest",
                    start + k,
                    start + k
                ));
            }
            v
        };
        let k = fit::largest(items.len(), |k| fit::size(&build(k)) <= self.limit);
        Ok(build(k))
    }

    async fn do_create(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: CreateArgs = args(a)?;
        // This directory is no use on another machine: through a fleet the
        // node picks (its user's home) unless told.
        let here = std::env::current_dir()
            .ok()
            .filter(|_| !self.conn.dial.is_fleet());
        let cwd = match (a.cwd, &here) {
            (Some(d), Some(here)) => Some(here.join(d).to_string_lossy().into_owned()),
            (Some(d), None) => Some(d),
            (None, here) => here.as_ref().map(|h| h.to_string_lossy().into_owned()),
        };
        let mut env: Vec<(String, String)> = a.env.unwrap_or_default().into_iter().collect();
        if !env.iter().any(|(k, _)| k == "TERM") {
            env.push(("TERM".into(), "xterm-256color".into()));
        }
        let spec = CreateSpec {
            name: a.name,
            command: a.command.unwrap_or_default(),
            cwd,
            env,
            ring_size: None,
            size: Some(WinSize {
                cols: a.cols.unwrap_or(DEFAULT_SIZE.cols),
                rows: a.rows.unwrap_or(DEFAULT_SIZE.rows),
            }),
            node: a.node,
            screen: None,
        };
        let c = self.conn.client().await?;
        let s = c.create(spec).await?;
        Ok(json!({
            "id": s.id.to_string(),
            "name": s.name,
            "state": s.state.to_string(),
            "command": tether_proto::gossip::short_command(&s.command),
            "offset": s.end_offset.0,
            "note": "read or wait from `offset` to see its output; for a shell, wait input = true (its prompt) before run",
        }))
    }

    async fn do_send(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: SendArgs = args(a)?;
        let keys = a.keys.unwrap_or_default();
        let mut data = a.text.unwrap_or_default().into_bytes();
        data.extend(tether_proto::keys::encode_all(&keys).map_err(|e| usage(e.to_string()))?);
        if data.is_empty() {
            return Err(usage(
                "nothing to send: give `text`, `keys` (e.g. [\"Enter\"]), or both",
            ));
        }
        let c = self.conn.client().await?;
        let before = c.info(&a.target).await?.end_offset;
        c.send(&a.target, &data).await?;
        Ok(json!({"bytes": data.len(), "offset": before.0}))
    }

    async fn do_read(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: ReadArgs = args(a)?;
        let c = self.conn.client().await?;
        let plain = a.plain.unwrap_or(true);
        let (_, v) = self
            .read_fitting(
                &c,
                &a.target,
                a.from.map(Offset),
                self.cap(a.max_bytes),
                plain,
                read_json,
            )
            .await?;
        Ok(v)
    }

    /// Reads at most `max` bytes from `from`, fewer when the answer that
    /// `build` makes of them is over the limit (JSON escapes of control
    /// characters can make an answer several times its output): read
    /// again, fewer, so that `next` stays exact.
    async fn read_fitting(
        &self,
        c: &Client,
        target: &str,
        from: Option<Offset>,
        max: usize,
        plain: bool,
        build: impl Fn(&agent::Read) -> Value,
    ) -> Result<(agent::Read, Value), ClientError> {
        let mut want = fit::first_want(max, self.limit);
        loop {
            let r = agent::read(c, target, from, want, plain).await?;
            let v = build(&r);
            let got = fit::size(&v);
            if got <= self.limit || want == 1 {
                return Ok((r, v));
            }
            want = fit::shrink(want, got, self.limit);
        }
    }

    async fn do_wait(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: WaitArgs = args(a)?;
        let chosen = [
            a.pattern.is_some(),
            a.idle_ms.is_some(),
            a.input == Some(true),
            a.exit == Some(true),
        ];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err(usage(
                "give one of pattern, idle_ms, input = true or exit = true, not several",
            ));
        }
        let until = if let Some(p) = &a.pattern {
            let re = regex::RegexBuilder::new(p)
                .multi_line(true)
                .build()
                .map_err(|e| usage(format!("pattern is not a valid regular expression: {e}")))?;
            Until::Pattern(re)
        } else if let Some(ms) = a.idle_ms {
            Until::Idle(Duration::from_millis(ms))
        } else if a.input == Some(true) {
            Until::Input
        } else {
            Until::Exit
        };
        let timeout = seconds(a.timeout_secs.unwrap_or(DEFAULT_WAIT_SECS), "timeout_secs")?;
        let c = self.conn.client().await?;
        let w = agent::wait(&c, &a.target, until, a.from.map(Offset), Some(timeout)).await?;
        let build = |matched: Option<&str>| {
            let mut v = json!({
                "reason": w.why.as_str(),
                "offset": w.offset.0,
                "matched": matched,
                "exit_code": w.exit.map(|e| e.shell_code()),
                "foreground": w.foreground.as_ref().map(foreground_json),
            });
            if w.why == agent::Why::Timeout {
                v["note"] = json!(format!(
                    "not within {} s; the output up to offset {} was looked at: call wait again (same from) to keep waiting",
                    timeout.as_secs_f64(),
                    w.offset.0
                ));
            }
            v
        };
        let Some(m) = &w.matched else {
            return Ok(build(None));
        };
        let len = fit::largest(m.len(), |k| {
            fit::size(&build(Some(fit::cut(m, k)))) + 64 <= self.limit
        });
        let mut v = build(Some(fit::cut(m, len)));
        if fit::cut(m, len).len() < m.len() {
            v["matched_truncated"] = json!(true);
            v["note"] = json!(format!(
                "the match is {} bytes, cut to fit; read the output before offset {} for all of it",
                m.len(),
                w.offset.0
            ));
        }
        Ok(v)
    }

    async fn do_screen(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: ScreenArgs = args(a)?;
        let cap = self.cap(a.max_bytes);
        let c = self.conn.client().await?;
        let s = c.screen(&a.target).await?;
        let rows = s.lines.len();
        let build = |first: usize| {
            let mut v = json!({
                "cols": s.cols,
                "rows": s.rows,
                "cursor": s.cursor.map(|(col, row)| json!({"col": col, "row": row})),
                "title": s.title,
                "alternate": s.alternate,
                "offset": s.offset.0,
                "lines": s.lines[first..],
            });
            if first > 0 {
                v["first_row"] = json!(first);
                v["truncated"] = json!(true);
                v["note"] = json!(format!(
                    "rows 0..{first} left out to fit; `read` has the output they show"
                ));
            }
            if s.skipped > 0 {
                v["skipped"] = json!(s.skipped);
            }
            v
        };
        let text = |first: usize| s.lines[first..].iter().map(|l| l.len() + 1).sum::<usize>();
        // Leave out as few top rows as fit (`fits` grows with `kept`).
        let kept = fit::largest(rows, |kept| {
            let first = rows - kept;
            text(first) <= cap && fit::size(&build(first)) <= self.limit
        });
        Ok(build(rows - kept))
    }

    async fn do_run(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: RunArgs = args(a)?;
        let timeout = seconds(a.timeout_secs.unwrap_or(DEFAULT_RUN_SECS), "timeout_secs")?;
        let cap = self.cap(a.max_bytes);
        let c = self.conn.client().await?;
        let max = fit::first_want(cap, self.limit);
        let r = agent::run(&c, &a.target, &a.command, timeout, max).await?;
        let build = |output: &str, next: Option<Offset>| {
            let mut v = json!({
                "output": output,
                "exit_code": r.exit_code,
                "from": r.from.0,
                "to": r.to.0,
                "truncated": next.is_some(),
                "timed_out": r.timed_out,
                "awaiting_input": r.awaiting_input.as_ref().map(foreground_json),
            });
            let mut notes = Vec::new();
            if let Some(n) = next {
                v["next"] = json!(n.0);
                notes.push(format!(
                    "output cut to fit: read from offset {} (up to {}) for the rest",
                    n.0, r.to.0
                ));
            }
            if let Some(f) = &r.awaiting_input {
                notes.push(format!(
                    "the command waits for input ({} reads the terminal): answer with send, then wait",
                    f.name
                ));
            }
            if r.timed_out {
                notes.push(format!(
                    "still running after {} s: wait (input = true for the prompt), then read from offset {}",
                    timeout.as_secs_f64(),
                    r.to.0
                ));
            }
            if !notes.is_empty() {
                v["note"] = json!(notes.join("; "));
            }
            v
        };
        let whole = build(&r.output, None);
        if !r.truncated && fit::size(&whole) <= self.limit {
            return Ok(whole);
        }
        // Cut: the page of output that fits, read again by offset so that
        // `next` is exact.
        let span = (r.to.0 - r.from.0) as usize;
        let (page, mut v) = self
            .read_fitting(
                &c,
                &a.target,
                Some(r.from),
                cap.min(span).max(1),
                true,
                |p| {
                    let next = (p.next < r.to).then_some(p.next);
                    build(&String::from_utf8_lossy(&p.data), next)
                },
            )
            .await?;
        if let Some((missed, resume)) = page.gap {
            v["gap"] = json!({"missed": missed.0, "resume": resume.0});
        }
        Ok(v)
    }

    async fn do_kill(&self, a: JsonObject) -> Result<Value, Failure> {
        let a: KillArgs = args(a)?;
        let name = a.signal.unwrap_or_else(|| "HUP".into());
        let signal = parse_signal(&name).map_err(|e| usage(format!("{e:#}")))?;
        let c = self.conn.client().await?;
        c.kill(&a.target, signal).await?;
        Ok(json!({"signal": signal, "sent": true}))
    }
}

/// The answer of `read`.
fn read_json(r: &agent::Read) -> Value {
    let mut v = json!({
        "from": r.from.0,
        "next": r.next.0,
        "more": r.more,
        "ended": r.ended,
        "data": String::from_utf8_lossy(&r.data),
    });
    let mut notes = Vec::new();
    if let Some((missed, resume)) = r.gap {
        v["gap"] = json!({"missed": missed.0, "resume": resume.0});
        notes.push(format!(
            "bytes {}..{} are no longer kept; this read starts at {}",
            missed.0, resume.0, r.from.0
        ));
    }
    if r.more {
        notes.push(format!(
            "more output waits: call read with from = {}",
            r.next.0
        ));
    }
    if !notes.is_empty() {
        v["note"] = json!(notes.join("; "));
    }
    v
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new(
                "tether",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_that_do_not_fit_are_tool_errors() {
        let bad = |v: Value| match args::<WaitArgs>(v.as_object().unwrap().clone()) {
            Err(Failure::Usage(m)) => m,
            _ => panic!("{v} was taken"),
        };
        assert!(bad(json!({"target": "x", "timeout": 3})).contains("unknown field `timeout`"));
        assert!(bad(json!({"target": "x", "from": "end"})).contains("invalid type"));
        assert!(bad(json!({})).contains("missing field `target`"));
    }

    #[test]
    fn refusals_name_their_kind_and_the_tool_to_call() {
        let e = ClientError::refused(ErrorKind::NotFound, "no session matches 'x'");
        assert_eq!(
            describe(&e),
            "not_found: no session matches 'x' (call `list` for the sessions this client sees)"
        );
        let e = ClientError::broken("reset");
        assert!(describe(&e).ends_with("(the next call connects again)"));
    }

    #[test]
    fn every_tool_has_a_schema_and_a_description() {
        let tools = Server::tool_router().list_all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names.len(), 8, "{names:?}");
        for t in &tools {
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 100),
                "{}",
                t.name
            );
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
        }
    }
}
