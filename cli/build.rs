//! Links the `tether-keeper` binary static and not position-independent,
//! where the toolchain can; every other binary and test is linked as
//! usual.
//!
//! A keeper runs per session for as long as the session does, so every
//! page it dirties counts a thousand times on a busy node. A dynamic PIE
//! dirties pages at load that a static non-PIE binary never has: its own
//! relocated read-only data (vtables, GOT), and the private pages of
//! `ld.so`, `libc.so`, `libgcc_s.so` and `libm.so`.
//!
//! Cargo gives a build script no per-binary codegen flags, only link
//! arguments, and rustc links a gnu target's binaries with `-pie` and
//! `-Wl,-Bdynamic -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`. So the
//! keeper gets `-static -no-pie` (the compiler driver takes the last of
//! `-pie`/`-no-pie`) and a directory of stand-in `lib*.so` linker scripts
//! that name the static archives (`libc.a`, `libgcc_eh.a`, ...), searched
//! before the system's directories: rustc's `-l` options then find the
//! archives even after its `-Bdynamic`.
//!
//! Anywhere else (not Linux with glibc, cross compiling, no `libc.a`, a
//! compiler that cannot link a static probe, `crt-static` already on, or
//! `TETHER_KEEPER_STATIC=0`) nothing is added and the keeper is linked as
//! the other binaries are.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TETHER_KEEPER_STATIC");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if !linux_gnu
        || env("TETHER_KEEPER_STATIC") == "0"
        || env("TARGET") != env("HOST")
        || env("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
    {
        return;
    }
    let out = PathBuf::from(env("OUT_DIR"));
    match stand_ins(&out) {
        Ok(dir) => {
            for arg in ["-static", "-no-pie", &format!("-L{}", dir.display())] {
                println!("cargo:rustc-link-arg-bin=tether-keeper={arg}");
            }
        }
        Err(why) => println!(
            "cargo:warning=tether-keeper is linked dynamically ({why}); \
             a static keeper needs less memory per session"
        ),
    }
}

/// The compiler driver rustc links with.
fn cc() -> String {
    std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into())
}

/// Where the compiler finds `name`, if it does.
fn find(name: &str) -> Option<PathBuf> {
    let out = Command::new(cc())
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // A file it cannot find comes back as the bare name.
    (p.is_absolute() && p.exists()).then(|| p.canonicalize().unwrap_or(p))
}

/// Writes the stand-in libraries into `<out>/static-keeper` after a probe
/// link, and returns that directory.
fn stand_ins(out: &Path) -> Result<PathBuf, String> {
    let need = |n: &str| find(n).ok_or_else(|| format!("{} does not find {n}", cc()));
    let libc = need("libc.a")?;
    let gcc = need("libgcc.a")?;
    let gcc_eh = need("libgcc_eh.a")?;
    let libm = need("libm.a")?;

    let probe = out.join("static-probe");
    let src = out.join("static-probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let ok = Command::new(cc())
        .args(["-static", "-no-pie", "-o"])
        .arg(&probe)
        .arg(&src)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err(format!("{} cannot link a static program", cc()));
    }

    let dir = out.join("static-keeper");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let group = format!(
        "GROUP({} {} {})\n",
        libc.display(),
        gcc.display(),
        gcc_eh.display()
    );
    let mut scripts = vec![
        ("libc.so", group.clone()),
        (
            "libgcc_s.so",
            format!("INPUT({} {})\n", gcc_eh.display(), gcc.display()),
        ),
        ("libm.so", format!("INPUT({})\n", libm.display())),
    ];
    // Empty since glibc 2.34; before, their own archives.
    for lib in ["util", "rt", "pthread", "dl"] {
        let script = find(&format!("lib{lib}.a"))
            .map_or_else(|| group.clone(), |p| format!("INPUT({})\n", p.display()));
        scripts.push((Box::leak(format!("lib{lib}.so").into_boxed_str()), script));
    }
    for (name, text) in scripts {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}
