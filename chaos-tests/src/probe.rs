//! What a drill asks of the fleet as a client would, and its patient
//! waits: one attach, keystroke round trips, how far a session's output
//! has gone, and polling with a deadline.

use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tether_client::{Dial, OutputStream, StreamEvent};
use tether_proto::{AttachSpec, StartAt};

/// How often a waiting assertion looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// The end offset of session `id`'s output now, asked through `dial`.
pub async fn end_offset(dial: &Dial, id: &str) -> anyhow::Result<u64> {
    let c = dial.connect(0).await?;
    Ok(c.info(id).await?.end_offset.0)
}

/// One attach through `dial` that must reach its first event.
pub async fn attach_once(dial: &Dial, id: &str) -> anyhow::Result<()> {
    let c = dial.connect(0).await?;
    let spec = AttachSpec {
        read_only: true,
        follow: false,
        ..AttachSpec::new(id, StartAt::End)
    };
    let s = OutputStream::open(c, spec).await?;
    s.close().await;
    Ok(())
}

/// `count` keystrokes into the echoing session `id`, each timed until its
/// echo; the round trips in ms, sorted.
pub async fn keystrokes(dial: &Dial, id: &str, count: usize) -> anyhow::Result<Vec<f64>> {
    let c = dial.connect(0).await?;
    let mut s = OutputStream::open(c, AttachSpec::new(id, StartAt::End)).await?;
    let mut ms = Vec::with_capacity(count);
    for i in 0..count {
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        s.input(&key).await?;
        let deadline = Duration::from_secs(10);
        tokio::time::timeout(deadline, async {
            loop {
                if let StreamEvent::Output { data, .. } = s.next().await? {
                    if data.contains(&key[0]) {
                        return anyhow::Ok(());
                    }
                }
            }
        })
        .await
        .with_context(|| format!("the echo of keystroke {i} did not come in {deadline:?}"))??;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    s.close().await;
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// Polls `cond` until it holds, fails, or `within` passes.
pub async fn wait_for(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        if cond()? {
            return Ok(());
        }
        if t.elapsed() > within {
            bail!("waited {within:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The same with an async condition; its errors count as "not yet", and
/// the last one is reported.
pub async fn wait_for_async<F, Fut>(what: &str, within: Duration, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let t = Instant::now();
    let mut last = String::new();
    loop {
        let left = within.saturating_sub(t.elapsed());
        match tokio::time::timeout(left.max(POLL), cond()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => last.clear(),
            Ok(Err(e)) => last = format!(" (last: {e:#})"),
            Err(_) => last = " (the last try hung)".into(),
        }
        if t.elapsed() > within {
            bail!("waited {within:?} for {what}{last}");
        }
        tokio::time::sleep(POLL).await;
    }
}
