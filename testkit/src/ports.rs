//! Free ports on a loopback address (127.0.0.x), picked by the kernel.
//!
//! A port picked with [`free_udp`] or [`free_tcp`] is released at once: a
//! second pick may return it again. When a harness needs several ports
//! before it starts the processes that bind them, it holds each one with
//! [`hold_udp`] / [`hold_tcp`] and releases them just before the start, so
//! the ports it picked differ.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

/// A port bound by this process until [`HeldPort::release`] (or drop).
#[derive(Debug)]
pub struct HeldPort {
    addr: SocketAddr,
    _udp: Option<UdpSocket>,
    _tcp: Option<TcpListener>,
}

impl HeldPort {
    /// The held address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Unbinds the port and returns its address, for a process to bind.
    pub fn release(self) -> SocketAddr {
        self.addr
    }
}

/// Binds a free UDP port on `ip` and holds it.
pub fn hold_udp(ip: impl Into<IpAddr>) -> anyhow::Result<HeldPort> {
    let ip = ip.into();
    let s = UdpSocket::bind((ip, 0)).with_context(|| {
        format!("binding a UDP socket on {ip}; is the address a loopback one (127.0.0.x)?")
    })?;
    Ok(HeldPort {
        addr: s.local_addr().context("reading a bound UDP address")?,
        _udp: Some(s),
        _tcp: None,
    })
}

/// Binds a free TCP port on `ip` (listening) and holds it.
pub fn hold_tcp(ip: impl Into<IpAddr>) -> anyhow::Result<HeldPort> {
    let ip = ip.into();
    let s = TcpListener::bind((ip, 0)).with_context(|| {
        format!("binding a TCP socket on {ip}; is the address a loopback one (127.0.0.x)?")
    })?;
    Ok(HeldPort {
        addr: s.local_addr().context("reading a bound TCP address")?,
        _udp: None,
        _tcp: Some(s),
    })
}

/// A UDP port on `ip` that was free a moment ago.
pub fn free_udp(ip: impl Into<IpAddr>) -> anyhow::Result<SocketAddr> {
    Ok(hold_udp(ip)?.release())
}

/// A TCP port on `ip` that was free a moment ago.
pub fn free_tcp(ip: impl Into<IpAddr>) -> anyhow::Result<SocketAddr> {
    Ok(hold_tcp(ip)?.release())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn held_ports_differ_and_are_free_once_released() {
        let ip = Ipv4Addr::new(127, 0, 0, 91);
        let a = hold_udp(ip).unwrap();
        let b = hold_udp(ip).unwrap();
        assert_ne!(a.addr(), b.addr());
        assert_eq!(a.addr().ip(), IpAddr::from(ip));
        let addr = a.release();
        UdpSocket::bind(addr).expect("a released UDP port can be bound");
        let t = hold_tcp(ip).unwrap().release();
        TcpListener::bind(t).expect("a released TCP port can be bound");
        assert_eq!(free_tcp(ip).unwrap().ip(), IpAddr::from(ip));
        assert_ne!(free_udp(ip).unwrap().port(), 0);
    }
}
