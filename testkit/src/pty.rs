//! [`PtyProc`]: a program in a real PTY (as a user's terminal would run
//! it), its output collected as it comes. Needs a tokio runtime.

use anyhow::Context;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`PtyProc::exit_code`] waits for the last output after the
/// exit.
const LAST_OUTPUT: Duration = Duration::from_secs(2);

/// A program running in a real PTY, its output collected. Killed on drop.
pub struct PtyProc {
    child: tokio::process::Child,
    writer: pty_process::OwnedWritePty,
    out: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl PtyProc {
    /// Starts `program ARGS` in a new PTY of `size` (columns, rows).
    pub fn spawn(
        program: impl AsRef<Path>,
        args: &[&str],
        size: (u16, u16),
    ) -> anyhow::Result<PtyProc> {
        let program = program.as_ref();
        let (pty, pts) = pty_process::open().context("opening a PTY")?;
        pty.resize(pty_process::Size::new(size.1, size.0))
            .context("sizing the PTY")?;
        let child = pty_process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .spawn(pts)
            .with_context(|| format!("starting {} in a PTY", program.display()))?;
        let (mut r, writer) = pty.into_split();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o2 = out.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            // EIO once the program has closed the terminal.
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o2.lock().expect("output lock").extend_from_slice(&buf[..n]);
            }
        });
        Ok(PtyProc {
            child,
            writer,
            out,
            reader,
        })
    }

    /// Everything the program wrote so far (lossy UTF-8).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("output lock")).into_owned()
    }

    /// Everything the program wrote from byte `from` on, as written.
    pub fn bytes_from(&self, from: usize) -> Vec<u8> {
        let out = self.out.lock().expect("output lock");
        out.get(from..).unwrap_or_default().to_vec()
    }

    /// Types `b` into the terminal. Panics if the PTY is gone.
    pub async fn write(&mut self, b: &[u8]) {
        self.writer.write_all(b).await.expect("writing to the PTY");
        self.writer.flush().await.expect("flushing the PTY");
    }

    /// Waits until the output contains `text`; panics after `timeout`,
    /// showing the output so far.
    pub async fn expect(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {text:?}; output so far: {:?}",
                    self.output()
                );
            }
            tokio::time::sleep(crate::wait::POLL).await;
        }
    }

    /// Waits for the program to exit; returns its code (-1 if a signal
    /// ended it). Panics after `timeout`.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let st = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("the process did not exit in time")
            .expect("waiting for the process");
        // Let the reader collect the last bytes.
        let _ = tokio::time::timeout(LAST_OUTPUT, &mut self.reader).await;
        st.code().unwrap_or(-1)
    }
}

impl Drop for PtyProc {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
