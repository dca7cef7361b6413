//! Files that must survive a crash or stay private: directories only their
//! owner can enter, and writes that leave either the old or the new
//! contents, never a torn file.

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create {}: check that its parent exists and is writable, or choose \
                 another --state-dir",
                dir.display()
            )
        })?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Writes a file crash-safely (mode 0600): after a crash at any point the
/// file holds either the old or the new contents.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
            ": the disk is full; free some space and try again"
        } else {
            ""
        };
        return Err(anyhow::Error::new(e).context(format!("writing {}{hint}", path.display())));
    }
    Ok(())
}

/// Writes a value as JSON, crash-safely.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v)?)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
            format!(
                "{} is corrupt; remove that session with `tether rm` or move the file away",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// Makes `p` relative to `base` unless it is absolute.
pub fn resolve_relative(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(read_json::<Vec<i32>>(&d.path().join("none"))
            .unwrap()
            .is_none());
        fs::write(&p, b"{garbage").unwrap();
        let e = read_json::<Vec<i32>>(&p).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }
}
