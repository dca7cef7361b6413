//! How sessions are printed: tables for people, JSON for programs.

use serde_json::{json, Value};
use tether_proto::{SessionInfo, SessionState};

pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// The JSON object of one session (`ls --json`, `info --json`).
pub fn session_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.id.to_string(),
        "short_id": s.id.short(),
        "name": s.name,
        "node": s.node.to_string(),
        "state": s.state.to_string(),
        "exit_code": s.exit.and_then(|e| e.code),
        "exit_signal": s.exit.and_then(|e| e.signal),
        "command": s.command,
        "cwd": s.cwd,
        "created_at": rfc3339(s.created_at_ms),
        "created_at_ms": s.created_at_ms,
        "exited_at": s.exited_at_ms.map(rfc3339),
        "start_offset": s.start_offset.0,
        "end_offset": s.end_offset.0,
        "ring_size": s.ring_size,
        "clients": s.clients,
        "pid": s.pid,
        "cols": s.size.cols,
        "rows": s.size.rows,
        "node_name": s.node_name,
        "unreachable": s.unreachable,
        "owner": s.owner,
        "shared": s.shared.iter().map(|sh| json!({"with": sh.with, "read_only": sh.read_only})).collect::<Vec<_>>(),
        "foreground": s.foreground.as_ref().map(|f| json!({
            "pid": f.pid,
            "name": f.name,
            "canonical": f.canonical,
            "echo": f.echo,
        })),
        "awaiting_input": s.awaiting_input,
    })
}

fn state_text(s: &SessionInfo) -> String {
    if s.unreachable.is_some() {
        return "unreachable".into();
    }
    match (s.state, s.exit) {
        (SessionState::Exited, Some(e)) => match (e.code, e.signal) {
            (Some(c), _) => format!("exited({c})"),
            (None, Some(sig)) => format!("killed({sig})"),
            _ => "exited".into(),
        },
        (st, _) => st.to_string(),
    }
}

fn age(ms: u64) -> String {
    let now = tether_net::time::now_ms();
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// The `ls` table.
pub fn table(sessions: &[SessionInfo]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "NAME".into(),
        "NODE".into(),
        "STATE".into(),
        "AGE".into(),
        "CLIENTS".into(),
        "OUTPUT".into(),
        "COMMAND".into(),
    ]];
    for s in sessions {
        rows.push([
            s.id.short(),
            s.name.clone().unwrap_or_else(|| "-".into()),
            s.node_name.clone().unwrap_or_else(|| "local".into()),
            state_text(s),
            age(s.created_at_ms),
            s.clients.to_string(),
            s.end_offset.0.to_string(),
            s.command.join(" "),
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == r.len() - 1 {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `info` text.
pub fn details(s: &SessionInfo) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    kv("id", s.id.to_string());
    kv("name", s.name.clone().unwrap_or_else(|| "-".into()));
    kv("node", s.node.to_string());
    kv("state", state_text(s));
    kv("command", s.command.join(" "));
    kv("cwd", s.cwd.clone());
    kv("created", rfc3339(s.created_at_ms));
    if let Some(t) = s.exited_at_ms {
        kv("exited", rfc3339(t));
    }
    if let Some(p) = s.pid {
        kv("pid", p.to_string());
    }
    kv("size", format!("{}x{}", s.size.cols, s.size.rows));
    kv(
        "output",
        format!(
            "{} bytes (ring holds {}..{}, {} bytes)",
            s.end_offset.0, s.start_offset.0, s.end_offset.0, s.ring_size
        ),
    );
    kv("clients", s.clients.to_string());
    if let Some(f) = &s.foreground {
        let waits = if f.awaiting_input {
            ", waiting for input"
        } else {
            ""
        };
        kv("foreground", format!("{} (pid {}){waits}", f.name, f.pid));
    }
    if s.state == SessionState::Damaged {
        kv("damaged", damaged_hint(s));
    }
    out
}

/// What a damaged session is and what to do with it.
fn damaged_hint(s: &SessionInfo) -> String {
    let id = s.id.short();
    let todo = match s.pid {
        Some(_) => format!("it still runs: stop it with `tether kill {id}`, then `tether rm {id}`"),
        None => format!("`tether rm {id}` removes it"),
    };
    format!(
        "its metadata or its ring file in the node's state dir is damaged (`tether tail` \
         names a damaged ring file, the node's log damaged metadata), so only what is still \
         known is shown; {todo}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::{NodeId, SessionId};

    #[test]
    fn a_damaged_session_is_shown_with_what_to_do() {
        let id = SessionId([3; 16]);
        let mut s = SessionInfo::new(id, NodeId([1; 8]), SessionState::Damaged);
        assert!(table(std::slice::from_ref(&s)).contains("damaged"));
        let d = details(&s);
        assert!(d.contains("state      damaged"), "{d}");
        assert!(d.contains(&format!("`tether rm {}`", id.short())), "{d}");
        s.pid = Some(42);
        assert!(details(&s).contains(&format!("`tether kill {}`", id.short())));
        assert_eq!(session_json(&s)["state"], "damaged");
    }
}
