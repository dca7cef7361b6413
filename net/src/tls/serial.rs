//! Certificate serial numbers, as the CA records them and CRLs list them.

/// A certificate serial number: big-endian, without leading zero bytes.
/// Shown as lowercase hex (`3f09a1...`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial of big-endian `bytes` (leading zeros dropped).
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        Serial(bytes[start..].to_vec())
    }

    /// A new random serial: 16 bytes, positive, the first byte not zero
    /// (so that its encoding is always 16 bytes).
    pub fn random() -> Serial {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS has a random source");
        b[0] = (b[0] & 0x7f).max(1);
        Serial(b.to_vec())
    }

    /// Big-endian bytes, no leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serial of a DER certificate.
    pub fn of_cert(cert: &[u8]) -> Option<Serial> {
        let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
        Some(Serial::from_bytes(c.tbs_certificate.raw_serial()))
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("00");
        }
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// Why a string is not a serial.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a serial number: give 1 to 40 hex digits (':' between bytes allowed)")]
pub struct BadSerial(String);

impl std::str::FromStr for Serial {
    type Err = BadSerial;
    fn from_str(s: &str) -> Result<Serial, BadSerial> {
        let hex: String = s.chars().filter(|&c| c != ':').collect();
        if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(BadSerial(s.to_string()));
        }
        let hex = if hex.len() % 2 == 1 {
            format!("0{hex}")
        } else {
            hex
        };
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
            .collect();
        Ok(Serial::from_bytes(&bytes))
    }
}
