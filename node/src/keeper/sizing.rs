//! Which window size a session takes when several clients attach from
//! windows of different sizes ([`Sizing`]): pure, so that the policy is
//! tested apart from sockets.
//!
//! - `Latest`: the client that attached, resized or typed last sets the
//!   size (clamped to the `Smallest` clients' windows, if any).
//! - `Smallest`: the session fits every client attached with this choice.
//! - `Fixed`, and every read-only client: never resize.

use tether_proto::{Sizing, WinSize};

/// The windows of the clients that chose `Smallest`.
#[derive(Debug, Default)]
pub struct Sizes {
    smallest: Vec<(u64, WinSize)>,
}

impl Sizes {
    /// Client `who`, attached with `sizing`, attached or resized to (or
    /// typed in a window of) `size`: the size the session should take,
    /// `None` to leave it.
    pub fn on_client(&mut self, who: u64, sizing: Sizing, size: WinSize) -> Option<WinSize> {
        match sizing {
            Sizing::Fixed => None,
            Sizing::Latest => Some(self.clamp(size)),
            Sizing::Smallest => {
                match self.smallest.iter_mut().find(|(w, _)| *w == who) {
                    Some(e) => e.1 = size,
                    None => self.smallest.push((who, size)),
                }
                self.min()
            }
        }
    }

    /// Client `who` left: the size the session should take now.
    pub fn on_leave(&mut self, who: u64) -> Option<WinSize> {
        let before = self.smallest.len();
        self.smallest.retain(|(w, _)| *w != who);
        if self.smallest.len() == before {
            return None;
        }
        self.min()
    }

    fn min(&self) -> Option<WinSize> {
        self.smallest
            .iter()
            .map(|(_, s)| *s)
            .reduce(|a, b| WinSize {
                cols: a.cols.min(b.cols),
                rows: a.rows.min(b.rows),
            })
    }

    fn clamp(&self, size: WinSize) -> WinSize {
        match self.min() {
            Some(m) => WinSize {
                cols: size.cols.min(m.cols),
                rows: size.rows.min(m.rows),
            },
            None => size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(cols: u16, rows: u16) -> WinSize {
        WinSize { cols, rows }
    }

    #[test]
    fn latest_follows_whoever_acted_last() {
        let mut s = Sizes::default();
        assert_eq!(
            s.on_client(1, Sizing::Latest, ws(200, 60)),
            Some(ws(200, 60))
        );
        assert_eq!(s.on_client(2, Sizing::Latest, ws(80, 24)), Some(ws(80, 24)));
        assert_eq!(
            s.on_client(1, Sizing::Latest, ws(200, 60)),
            Some(ws(200, 60))
        );
        assert_eq!(s.on_leave(1), None);
    }

    #[test]
    fn smallest_fits_every_such_client_and_grows_when_one_leaves() {
        let mut s = Sizes::default();
        assert_eq!(
            s.on_client(1, Sizing::Smallest, ws(200, 30)),
            Some(ws(200, 30))
        );
        assert_eq!(
            s.on_client(2, Sizing::Smallest, ws(100, 50)),
            Some(ws(100, 30))
        );
        // A latest client is clamped to them.
        assert_eq!(
            s.on_client(3, Sizing::Latest, ws(300, 100)),
            Some(ws(100, 30))
        );
        assert_eq!(s.on_leave(2), Some(ws(200, 30)));
        assert_eq!(s.on_leave(1), None);
        assert_eq!(
            s.on_client(3, Sizing::Latest, ws(300, 100)),
            Some(ws(300, 100))
        );
    }

    #[test]
    fn fixed_never_resizes() {
        let mut s = Sizes::default();
        assert_eq!(s.on_client(1, Sizing::Fixed, ws(10, 5)), None);
        assert_eq!(s.on_leave(1), None);
    }
}
