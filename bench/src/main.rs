//! Benchmarks: tether side by side with a raw PTY, tmux and a direct
//! connection. (Being written.)

fn main() {
    eprintln!("bench: no scenario yet");
    std::process::exit(2);
}
