//! The requests a node answers with one reply: list, info, create, send,
//! kill, remove, wait, nodes.

use super::access::Caller;
use super::entry::{Entry, Life};
use super::sessions::{refuse, Refusal};
use super::stats::Limit;
use super::Node;
use crate::ring::{MAX_RING_SIZE, MIN_RING_SIZE};
use crate::store::{self, SessionMeta, SessionPaths};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tether_proto::gossip::Role;
use tether_proto::{
    CreateSpec, ErrorKind, EventKind, KeeperRequest, MemberInfo, Reply, Request, SessionId,
    SessionInfo,
};
use tracing::info;

/// Longest accepted session name.
pub const MAX_NAME_LEN: usize = 64;

impl Node {
    /// Answers a request of `who` that gets one reply.
    pub(crate) async fn answer(
        self: &Arc<Self>,
        req: Request,
        who: &Caller,
    ) -> Result<Reply, Refusal> {
        match req {
            Request::List => {
                // From the daemon's own state and the ring headers, without
                // asking every keeper: `info` gives one session's live
                // figures.
                let entries = self.sessions.lock().expect("sessions lock").entries();
                let mut sessions: Vec<SessionInfo> = entries
                    .iter()
                    .filter(|e| who.sees(e))
                    .map(|e| e.static_info())
                    .collect();
                sessions.sort_by_key(|s| (s.created_at_ms, s.id));
                Ok(Reply::Sessions { sessions })
            }
            Request::Nodes => Ok(Reply::Nodes {
                nodes: vec![MemberInfo {
                    name: self.name(),
                    id: self.node_id.to_string(),
                    role: Role::Node,
                    live: true,
                    quic: self.cfg.advertised().map(|a| a.to_string()),
                    sessions: self.sessions.lock().expect("sessions lock").len() as u32,
                    dead_since_ms: None,
                }],
            }),
            Request::Info { target } => {
                let e = self.resolve_as(who, &target)?;
                Ok(Reply::Session {
                    session: self.info_probed(&e).await,
                })
            }
            Request::Locate { target } => {
                let e = self.resolve_as(who, &target)?;
                Ok(Reply::Located { id: e.meta.id })
            }
            Request::Create(spec) => self.create(spec, who).await,
            Request::Send { target, data } => {
                let e = self.resolve_running(who, &target, "send input to")?;
                let target = e.meta.id.to_string();
                self.keeper_call(&e, KeeperRequest::Send { target, data })
                    .await
            }
            Request::Kill { target, signal } => {
                let e = self.resolve_running(who, &target, "signal")?;
                let target = e.meta.id.to_string();
                self.keeper_call(&e, KeeperRequest::Kill { target, signal })
                    .await
            }
            Request::Screen { target } => {
                let e = self.resolve_running(who, &target, "see the screen of")?;
                let target = e.meta.id.to_string();
                self.keeper_call(&e, KeeperRequest::Screen { target }).await
            }
            Request::Remove { target } => self.remove(who, &target),
            Request::Wait { target } => self.wait(who, &target).await,
            Request::Share { target, share } => {
                let e = self.resolve_as(who, &target)?;
                may_share(who, &e)?;
                if e.meta.owner.as_deref() == Some(share.with.as_str()) {
                    return refuse(
                        ErrorKind::BadRequest,
                        format!("{} already owns session {}", share.with, e.label()),
                    );
                }
                let mut shares = e.shares();
                shares.retain(|s| s.with != share.with);
                info!(who = %who, session = %e.meta.id, with = %share.with, read_only = share.read_only, "shared");
                shares.push(share);
                e.set_shares(shares)
                    .map_err(|err| Refusal(ErrorKind::Internal, format!("{err:#}")))?;
                Ok(Reply::Ok)
            }
            Request::Unshare { target, with } => {
                let e = self.resolve_as(who, &target)?;
                may_share(who, &e)?;
                let mut shares = e.shares();
                let before = shares.len();
                shares.retain(|s| s.with != with);
                if shares.len() == before {
                    return refuse(
                        ErrorKind::NotFound,
                        format!("session {} is not shared with {with}", e.label()),
                    );
                }
                e.set_shares(shares)
                    .map_err(|err| Refusal(ErrorKind::Internal, format!("{err:#}")))?;
                info!(who = %who, session = %e.meta.id, %with, "unshared");
                Ok(Reply::Ok)
            }
            other => refuse(
                ErrorKind::BadRequest,
                format!("{other:?} is not a request a node answers"),
            ),
        }
    }

    /// Finds a session by ID, unique ID prefix, or name.
    pub(crate) fn resolve(&self, target: &str) -> Result<Arc<Entry>, Refusal> {
        let me = self.name();
        self.sessions
            .lock()
            .expect("sessions lock")
            .resolve(target, &me)
    }

    /// Finds a session `who` sees: the others do not resolve.
    pub(crate) fn resolve_as(&self, who: &Caller, target: &str) -> Result<Arc<Entry>, Refusal> {
        let me = self.name();
        self.sessions
            .lock()
            .expect("sessions lock")
            .resolve_among(target, &me, |e| who.sees(e))
    }

    fn resolve_running(
        &self,
        who: &Caller,
        target: &str,
        verb: &str,
    ) -> Result<Arc<Entry>, Refusal> {
        let e = self.resolve_as(who, target)?;
        may_write(who, &e, verb)?;
        let life = e.life.borrow().clone();
        match life {
            Life::Running => Ok(e),
            Life::Exited(r) => refuse(
                ErrorKind::BadRequest,
                format!(
                    "cannot {verb} session {}: it exited (code {})",
                    e.label(),
                    r.status.shell_code()
                ),
            ),
            Life::Lost => refuse(
                ErrorKind::BadRequest,
                format!(
                    "cannot {verb} session {}: its keeper is gone (lost); its output is still \
                     readable with `tether tail`",
                    e.label()
                ),
            ),
        }
    }

    fn remove(&self, who: &Caller, target: &str) -> Result<Reply, Refusal> {
        let e = self.resolve_as(who, target)?;
        may_write(who, &e, "remove")?;
        if e.is_running() {
            return refuse(
                ErrorKind::BadRequest,
                format!(
                    "session {} is still running; stop it with `tether kill {}` first",
                    e.label(),
                    e.meta.id.short()
                ),
            );
        }
        std::fs::remove_dir_all(&e.paths.dir)
            .with_context(|| format!("removing {}", e.paths.dir.display()))?;
        self.sessions
            .lock()
            .expect("sessions lock")
            .remove(&e.meta.id);
        self.changed.notify_one();
        self.publish(EventKind::Removed, &e, None);
        info!(session = %e.meta.id, "removed");
        Ok(Reply::Ok)
    }

    async fn create(self: &Arc<Self>, spec: CreateSpec, who: &Caller) -> Result<Reply, Refusal> {
        // Held to the end, so that two creations cannot both take the last
        // free place or the same name.
        let _guard = self.create_lock.lock().await;
        let owner = who.owner_name();
        if let Some(o) = &owner {
            let held = self
                .sessions
                .lock()
                .expect("sessions lock")
                .entries()
                .iter()
                .filter(|e| e.meta.owner.as_ref() == Some(o))
                .count();
            let max = self.cfg.max_sessions_per_identity;
            if held >= max {
                self.refusals.count(Limit::SessionsPerIdentity);
                return refuse(
                    ErrorKind::Limit,
                    format!(
                        "{who} holds {held} sessions on this node, its limit \
                         (max_sessions_per_identity = {max}); remove ended ones with `tether rm`, \
                         or ask the node's operator to raise the limit"
                    ),
                );
            }
        }
        if let Some(name) = &spec.name {
            validate_name(name)?;
            let taken = self
                .sessions
                .lock()
                .expect("sessions lock")
                .name_taken(name);
            if let Some(holder) = taken {
                let free = if holder.is_running() {
                    String::new()
                } else {
                    format!(" or free it with `tether rm {name}`")
                };
                return refuse(
                    ErrorKind::NameTaken,
                    format!(
                        "the name '{name}' is taken by session {} ({}); pick another name{free}",
                        holder.meta.id.short(),
                        holder.state(),
                    ),
                );
            }
        }
        let ring_size = spec.ring_size.unwrap_or(self.cfg.ring_size);
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&ring_size) {
            return refuse(
                ErrorKind::BadRequest,
                format!("ring size {ring_size} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes"),
            );
        }
        self.check_limits(ring_size)?;
        let cwd = match spec.cwd {
            Some(c) => c,
            None => std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        };
        if !Path::new(&cwd).is_dir() {
            return refuse(
                ErrorKind::BadRequest,
                format!("working directory {cwd} does not exist; pass an existing --cwd"),
            );
        }
        let command = if spec.command.is_empty() {
            self.cfg.shell()
        } else {
            spec.command
        };
        let id = SessionId::generate(self.node_id);
        let paths = SessionPaths::new(&self.state_dir, id);
        let meta = SessionMeta {
            id,
            name: spec.name,
            node: self.node_id,
            command,
            launcher: self.cfg.launcher.clone(),
            cwd,
            env: spec.env,
            created_at_ms: store::now_ms(),
            ring_size,
            size: spec.size.unwrap_or_default(),
            owner,
            shared: Vec::new(),
            screen_history: spec
                .screen
                .unwrap_or(self.cfg.screen)
                .then_some(self.cfg.screen_history),
        };
        store::create_private_dir(&paths.dir)?;
        if let Err(e) = store::write_json(&paths.meta(), &meta) {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e.into());
        }
        if let Err(e) = self.spawn_keeper(&paths, id).await {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return refuse(ErrorKind::BadRequest, format!("{e:#}"));
        }
        let entry = self.watch_new(meta, paths).await;
        self.publish(EventKind::Created, &entry, None);
        if !entry.is_running() {
            self.prune();
        }
        info!(session = %id, name = ?entry.meta.name, command = ?entry.meta.command, "created");
        Ok(Reply::Session {
            session: self.info(&entry).await,
        })
    }

    /// Refuses a creation beyond the config's limits on what a client may
    /// make this node hold, counting the refusal by limit.
    fn check_limits(&self, ring_size: u64) -> Result<(), Refusal> {
        let max = self.cfg.max_ring_bytes;
        if ring_size > max {
            self.refusals.count(Limit::RingBytes);
            return refuse(
                ErrorKind::Limit,
                format!(
                    "a ring of {ring_size} bytes is larger than this node allows \
                     (max_ring_bytes = {max}); ask for a smaller --ring-size, or raise \
                     max_ring_bytes in the node's config (node.toml) and restart the node"
                ),
            );
        }
        let held = self.sessions.lock().expect("sessions lock").len();
        let max = self.cfg.max_sessions;
        if held >= max {
            self.refusals.count(Limit::Sessions);
            return refuse(
                ErrorKind::Limit,
                format!(
                    "this node holds {held} sessions, its limit (max_sessions = {max}, running \
                     and ended ones not yet removed); remove ended sessions with `tether rm`, \
                     or raise max_sessions in the node's config (node.toml) and restart the node"
                ),
            );
        }
        Ok(())
    }

    async fn wait(&self, who: &Caller, target: &str) -> Result<Reply, Refusal> {
        let e = self.resolve_as(who, target)?;
        let mut rx = e.life.subscribe();
        let life = rx
            .wait_for(|l| !matches!(l, Life::Running))
            .await
            .map_err(anyhow::Error::from)?
            .clone();
        Ok(match life {
            Life::Exited(r) => Reply::Exited {
                end: r.end,
                status: r.status,
            },
            _ => Reply::Lost {
                end: e.ring_bounds().1,
            },
        })
    }
}

/// Refuses `verb` on `e` unless `who` may write to it.
fn may_write(who: &Caller, e: &Entry, verb: &str) -> Result<(), Refusal> {
    if who.may_write(e) {
        return Ok(());
    }
    refuse(
        ErrorKind::Forbidden,
        format!(
            "{who} may not {verb} session {}: {}",
            e.label(),
            why_not(who, e)
        ),
    )
}

/// Refuses a share of `e` unless `who` may share it.
fn may_share(who: &Caller, e: &Entry) -> Result<(), Refusal> {
    if who.may_share(e) {
        return Ok(());
    }
    refuse(
        ErrorKind::Forbidden,
        format!(
            "{who} may not share session {}: only its owner ({}) or an admin may",
            e.label(),
            owner_of(e)
        ),
    )
}

fn owner_of(e: &Entry) -> String {
    match &e.meta.owner {
        Some(o) => format!("client {o}"),
        None => "the node's local owner".into(),
    }
}

fn why_not(who: &Caller, e: &Entry) -> String {
    if matches!(who, Caller::Client(p) if p.read_only) {
        return "its certificate is read-only".into();
    }
    let name = match who {
        Caller::Client(p) => p.name.as_str(),
        Caller::Local => "NAME",
    };
    format!(
        "it belongs to {} and is shared with {name} read-only; its owner can let {name} type \
         with `tether share {} --with {name}`",
        owner_of(e),
        e.meta.id.short()
    )
}

fn validate_name(name: &str) -> Result<(), Refusal> {
    if tether_proto::looks_like_id(name) {
        return refuse(
            ErrorKind::BadRequest,
            format!(
                "the name '{name}' could be read as a session ID (it has {} or more characters, \
                 all of 0-9 and a-z but i, l, o, u), and an ID always wins over a name; add a \
                 character such as '-' or '_' (e.g. '{name}-1')",
                tether_proto::ids::SHORT_ID_LEN
            ),
        );
    }
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        refuse(
            ErrorKind::BadRequest,
            format!(
                "'{name}' is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        )
    }
}
