//! The boot request: `GET /api/v1/boot/pi?serial=<8 hex>&mac=<aa:bb:..>[&full_serial=…]
//! [&mode=…]`, as pi-init builds it and the controller parses it. Upstream PureBoot's query
//! (`serial`, `mac`, `mode`) plus `full_serial`, so the controller can tell apart two Pi 5s
//! whose low 32 bits collide, and `kernel`, the release the Pi booted (from its TFTP folder),
//! so the answer can name a root with that kernel's modules.

use std::fmt;

use crate::ids::{FullSerial, InvalidId, Mac, Serial};

/// The route, under the controller's base URL.
pub const PATH: &str = "/api/v1/boot/pi";

/// The query's names.
pub const SERIAL: &str = "serial";
pub const MAC: &str = "mac";
pub const FULL_SERIAL: &str = "full_serial";
pub const MODE: &str = "mode";
pub const KERNEL: &str = "kernel";

/// Upstream's `mode=discovery` (and `pureboot.mode=discovery` on a discovery folder's
/// command line): recorded by the controller, answered like any boot.
pub const DISCOVERY: &str = "discovery";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootQuery {
    pub serial: Serial,
    pub mac: Option<Mac>,
    /// Only when the board reports more than the short serial, and ending in it.
    pub full_serial: Option<FullSerial>,
    /// Free text, kept as given.
    pub mode: Option<String>,
    /// The running kernel's release (`uname -r`); none when absent or not a release name.
    pub kernel: Option<String>,
}

/// A kernel release as `uname -r` gives it: 1 to 64 of `A-Z a-z 0-9 . _ + - ~`; it names a
/// directory (`lib/modules/<release>`), so nothing else passes.
pub fn kernel_release(v: &str) -> Option<&str> {
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'~'))
        && !v.starts_with('.');
    ok.then_some(v)
}

/// A query that is no boot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadQuery {
    Missing(&'static str),
    Repeated(&'static str),
    Invalid(InvalidId),
}

impl fmt::Display for BadQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadQuery::Missing(name) => write!(f, "missing query parameter {name}"),
            BadQuery::Repeated(name) => write!(f, "query parameter {name} given twice"),
            BadQuery::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BadQuery {}

impl From<InvalidId> for BadQuery {
    fn from(e: InvalidId) -> BadQuery {
        BadQuery::Invalid(e)
    }
}

impl BootQuery {
    pub fn new(serial: Serial, mac: Option<Mac>, full_serial: Option<FullSerial>) -> BootQuery {
        BootQuery {
            serial,
            mac,
            full_serial,
            mode: None,
            kernel: None,
        }
    }

    /// `serial=…&mac=…[&full_serial=…][&mode=…]`, percent-encoded where needed (only the
    /// free-text `mode` can need it).
    pub fn to_query_string(&self) -> String {
        let mut q = format!("{SERIAL}={}", self.serial);
        if let Some(mac) = &self.mac {
            q.push_str(&format!("&{MAC}={mac}"));
        }
        if let Some(full) = &self.full_serial {
            q.push_str(&format!("&{FULL_SERIAL}={full}"));
        }
        if let Some(mode) = &self.mode {
            q.push_str(&format!("&{MODE}={}", percent_encode(mode)));
        }
        if let Some(k) = &self.kernel {
            q.push_str(&format!("&{KERNEL}={}", percent_encode(k)));
        }
        q
    }

    /// The request's URL under the controller's base URL (`http://10.0.0.1:8080`).
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}{PATH}?{}",
            base.trim_end_matches('/'),
            self.to_query_string()
        )
    }

    /// From the query's decoded pairs. `serial` is required; an empty `mac` or
    /// `full_serial` is none; other names are ignored (upstream's clients may send more);
    /// a name given twice is refused.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<BootQuery, BadQuery> {
        let (mut serial, mut mac, mut full, mut mode, mut kernel) = (None, None, None, None, None);
        for (k, v) in pairs {
            let (slot, name) = match k {
                SERIAL => (&mut serial, SERIAL),
                MAC => (&mut mac, MAC),
                FULL_SERIAL => (&mut full, FULL_SERIAL),
                MODE => (&mut mode, MODE),
                KERNEL => (&mut kernel, KERNEL),
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return Err(BadQuery::Repeated(name));
            }
        }
        let serial = Serial::parse(serial.ok_or(BadQuery::Missing(SERIAL))?)?;
        let mac = mac.filter(|m| !m.is_empty()).map(Mac::parse).transpose()?;
        let full_serial = match full.filter(|f| !f.is_empty()) {
            Some(f) => FullSerial::claimed_for(f, &serial)?,
            None => None,
        };
        Ok(BootQuery {
            serial,
            mac,
            full_serial,
            mode: mode.map(String::from),
            kernel: kernel.and_then(kernel_release).map(String::from),
        })
    }
}

/// Every byte but the unreserved ones (RFC 3986) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoding a server does (`+` is a space, `%XX` a byte), for the round trip.
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    fn parse(q: &str) -> Result<BootQuery, BadQuery> {
        let p = pairs(q);
        BootQuery::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn builds_what_it_parses() {
        let serial = Serial::parse("d83add36").unwrap();
        let mut q = BootQuery::new(
            serial.clone(),
            Some(Mac::parse("dc:a6:32:01:02:03").unwrap()),
            Some(FullSerial::parse("10000000d83add36").unwrap()),
        );
        assert_eq!(
            q.url("http://10.0.0.1:8080/"),
            "http://10.0.0.1:8080/api/v1/boot/pi?serial=d83add36&mac=dc:a6:32:01:02:03\
             &full_serial=10000000d83add36"
        );
        assert_eq!(parse(&q.to_query_string()), Ok(q.clone()));
        q.mode = Some("disc overy&x=1".into());
        assert!(q.to_query_string().ends_with("&mode=disc%20overy%26x%3D1"));
        assert_eq!(parse(&q.to_query_string()), Ok(q.clone()));
        q.kernel = Some("6.1.0-31-arm64+rpt~1".into());
        assert!(q
            .to_query_string()
            .ends_with("&kernel=6.1.0-31-arm64%2Brpt~1"));
        assert_eq!(parse(&q.to_query_string()), Ok(q.clone()));
        // A kernel release that could name another directory is none, never a refusal.
        for bad in ["../../etc", ".hidden", "a/b", "", &"x".repeat(65)] {
            let got = parse(&format!("serial=d83add36&kernel={bad}")).unwrap();
            assert_eq!(got.kernel, None, "{bad}");
        }
        let bare = BootQuery::new(serial, None, None);
        assert_eq!(bare.to_query_string(), "serial=d83add36");
        assert_eq!(parse("serial=D83ADD36&mac=&full_serial="), Ok(bare));
    }

    #[test]
    fn refuses_what_is_no_boot_request() {
        let table = [
            ("mac=dc:a6:32:01:02:03", "missing query parameter serial"),
            ("serial=d83add36&serial=d83add37", "serial given twice"),
            ("serial=d83add3", "invalid serial"),
            ("serial=d83add36&mac=x", "invalid MAC address"),
            (
                "serial=d83add36&full_serial=10000000d83add37",
                "must equal the short serial",
            ),
        ];
        for (q, want) in table {
            let e = parse(q).unwrap_err().to_string();
            assert!(e.contains(want), "{q}: {e}");
        }
        // Upstream's own names and unknown ones.
        let q = parse("serial=d83add36&mode=discovery&extra=1").unwrap();
        assert_eq!(q.mode.as_deref(), Some(DISCOVERY));
        // An 8-digit full serial is the short one again: none.
        assert_eq!(
            parse("serial=d83add36&full_serial=D83ADD36")
                .unwrap()
                .full_serial,
            None
        );
    }
}
