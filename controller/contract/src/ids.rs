//! The identifiers pi-init, the controller and pureboot-image must agree on, each with one
//! parser. A value that passes is normalised (lowercase) and safe as a file name where the
//! export or the TFTP root uses it as one.

use std::fmt;

/// A value that is not the identifier it was meant to be: which kind, what was given, what
/// was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: {}",
            self.what, self.value, self.expected
        )
    }
}

impl std::error::Error for InvalidId {}

fn invalid(what: &'static str, value: &str, expected: impl Into<String>) -> InvalidId {
    InvalidId {
        what,
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                $name::parse(s)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        /// As its text, the form every wire and file carries.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        /// Through its parser: a value that does not pass is an error of the whole document.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The short Pi serial: exactly 8 hex digits, lowercase (`D83ADD36` -> `d83add36`). The
/// firmware's TFTP folder, the boot API's `serial=` and the export's `nodes/<serial>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(String);
string_id!(Serial);

impl Serial {
    pub fn parse(s: &str) -> Result<Serial, InvalidId> {
        if s.len() == 8 && is_hex(s) {
            return Ok(Serial(s.to_ascii_lowercase()));
        }
        let hint = match FullSerial::parse(s) {
            Ok(full) => format!(" (a full serial: its short form is {})", full.short()),
            Err(_) => String::new(),
        };
        Err(invalid("serial", s, format!("exactly 8 hex digits{hint}")))
    }
}

/// The serial as Linux shows it: 16 hex digits, lowercase (`10000000d83add36` on a Pi 4, 16
/// random digits on a Pi 5, whose low 8 are not guaranteed unique). Between 9 and 15 digits
/// are taken as the same number with its leading zeros dropped; 8 digits are a [`Serial`],
/// never a full one: a board that only ever named its short serial has no full one on record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FullSerial(String);
string_id!(FullSerial);

impl FullSerial {
    pub fn parse(s: &str) -> Result<FullSerial, InvalidId> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if !(9..=16).contains(&digits.len()) || !is_hex(digits) {
            return Err(invalid("full serial", s, "9 to 16 hex digits"));
        }
        Ok(FullSerial(format!("{:0>16}", digits.to_ascii_lowercase())))
    }

    /// The low 8 digits.
    pub fn short(&self) -> Serial {
        Serial(self.0[8..].to_string())
    }

    /// A full serial a request names beside its short one: its low 8 digits must be that
    /// short serial. Eight digits are the short serial again, not a full one: `None`, so a
    /// board that named only its short serial never has it recorded as its full one.
    pub fn claimed_for(s: &str, short: &Serial) -> Result<Option<FullSerial>, InvalidId> {
        if Serial::parse(s).is_ok_and(|same| same == *short) {
            return Ok(None);
        }
        let full = FullSerial::parse(s)?;
        if full.short() == *short {
            Ok(Some(full))
        } else {
            Err(invalid(
                "full serial",
                s,
                format!("its last 8 digits must equal the short serial {short}"),
            ))
        }
    }
}

/// An Ethernet MAC, `aa:bb:cc:dd:ee:ff`; `-` separators and upper case are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mac(String);
string_id!(Mac);

impl Mac {
    pub fn parse(s: &str) -> Result<Mac, InvalidId> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && is_hex(p)) {
            Ok(Mac(parts.join(":").to_ascii_lowercase()))
        } else {
            Err(invalid(
                "MAC address",
                s,
                "six hex pairs like aa:bb:cc:dd:ee:ff",
            ))
        }
    }

    pub fn from_bytes(b: [u8; 6]) -> Mac {
        Mac(format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        ))
    }

    /// The 12 hex digits without separators (`dca632010203`), for names built from a MAC.
    pub fn digits(&self) -> String {
        self.0.replace(':', "")
    }
}

/// A host name: RFC 1123 labels (letters, digits, inner `-`) of 1 to 63 characters joined by
/// `.`, at most 64 in all (what Linux's `sethostname` takes), lowercase. What `etc/hostname`,
/// `sethostname` and the boot API carry; `_` and spaces are refused everywhere alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hostname(String);

/// Linux's limit for a host name (`__NEW_UTS_LEN`).
pub const MAX_HOSTNAME: usize = 64;
string_id!(Hostname);

impl Hostname {
    pub fn parse(s: &str) -> Result<Hostname, InvalidId> {
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.len() <= MAX_HOSTNAME && s.split('.').all(label_ok) {
            Ok(Hostname(s.to_ascii_lowercase()))
        } else {
            Err(invalid(
                "hostname",
                s,
                "RFC 1123 labels (letters, digits, inner '-'), at most 64 characters",
            ))
        }
    }

    /// The host name of a node nobody named: `pi-<serial>` (`pi-d83add36`).
    pub fn for_serial(serial: &Serial) -> Hostname {
        Hostname(format!("{DEFAULT_HOSTNAME_PREFIX}{serial}"))
    }

    /// The host name of a board without a serial, nobody having named it: `pi-<the MAC's
    /// 12 digits>` (`pi-525400123456`).
    pub fn for_mac(mac: &Mac) -> Hostname {
        Hostname(format!("{DEFAULT_HOSTNAME_PREFIX}{}", mac.digits()))
    }
}

/// What a default host name starts with ([`Hostname::for_serial`], [`Hostname::for_mac`]).
pub const DEFAULT_HOSTNAME_PREFIX: &str = "pi-";

/// A base image's name: the directory `base/<name>` of the export. Letters, digits, `.`, `_`,
/// `-`, starting with a letter or digit: not `.` (imports in progress are hidden `.import-…`
/// directories), and not `-` or `_`, so a name is never read as an option (`image rm -rf`) by
/// the CLI or by a shell script handling the export.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName(String);
string_id!(ImageName);

impl ImageName {
    pub fn parse(s: &str) -> Result<ImageName, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(ImageName(s.to_string()))
        } else {
            Err(invalid(
                "base image name",
                s,
                "letters, digits, '.', '_', '-', starting with a letter or digit",
            ))
        }
    }
}

/// systemd's machine id: 32 hex digits, lowercase, not all zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineId(String);
string_id!(MachineId);

impl MachineId {
    pub fn parse(s: &str) -> Result<MachineId, InvalidId> {
        if s.len() == 32 && is_hex(s) && !s.bytes().all(|b| b == b'0') {
            Ok(MachineId(s.to_ascii_lowercase()))
        } else {
            Err(invalid("machine id", s, "32 hex digits, not all zero"))
        }
    }

    /// A stable id derived from the board's identity (its full serial, or its MAC where it
    /// has none): FNV-1a over 128 bits, so a node gets the same id on every boot without
    /// anything stored.
    pub fn derived_from(identity: &str) -> MachineId {
        let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
        for b in b"pureboot-machine-id:".iter().chain(identity.as_bytes()) {
            h ^= u128::from(*b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        // All zeros is not a machine id; FNV cannot be steered there by a serial, but be sure.
        MachineId(format!("{:032x}", h.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert_eq!(Serial::parse("D83ADD36").unwrap().as_str(), "d83add36");
        for bad in [
            "",
            "d83add3",
            "d83add367",
            "../etc/x",
            "d83addg6",
            "d83add3\n",
            " d83add36",
        ] {
            assert!(Serial::parse(bad).is_err(), "{bad:?}");
        }
        let e = Serial::parse("10000000D83ADD36").unwrap_err().to_string();
        assert!(e.contains("short form is d83add36"), "{e}");
    }

    #[test]
    fn full_serials() {
        let f = FullSerial::parse("10000000D83ADD36").unwrap();
        assert_eq!(f.as_str(), "10000000d83add36");
        assert_eq!(f.short().as_str(), "d83add36");
        assert_eq!(
            FullSerial::parse("0x100000000badc0de").unwrap().as_str(),
            "100000000badc0de"
        );
        // Leading zeros dropped: the same number.
        assert_eq!(
            FullSerial::parse("abcdef012").unwrap().as_str(),
            "0000000abcdef012"
        );
        // 8 digits are a short serial, not a full one.
        for bad in [
            "d83add36",
            "",
            "110000000d83add36",
            "10000000d83add3g",
            "-1000000d83add36",
        ] {
            assert!(FullSerial::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs() {
        let m = Mac::parse("DC-A6-32-01-02-03").unwrap();
        assert_eq!(m.as_str(), "dc:a6:32:01:02:03");
        assert_eq!(m.digits(), "dca632010203");
        assert_eq!(
            Mac::from_bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]).as_str(),
            "52:54:00:12:34:56"
        );
        for bad in [
            "",
            "dc:a6:32:01:02",
            "dc:a6:32:01:02:0g",
            "dca632010203",
            "dc:a6:32:01:02:003",
        ] {
            assert!(Mac::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            Hostname::parse("Kitchen-Pi.lan").unwrap().as_str(),
            "kitchen-pi.lan"
        );
        assert!(Hostname::parse(&"x".repeat(63)).is_ok());
        let long = ["a".repeat(63), "b".to_string()].join(".");
        assert_eq!(long.len(), 65);
        assert!(Hostname::parse(&long[..64]).is_err(), "ends with '.'");
        assert!(Hostname::parse(&format!("{}.bc", "a".repeat(61))).is_ok());
        for bad in [
            "",
            "-x",
            "x-",
            "a b",
            "a..b",
            "a/b",
            "a_b",
            "pi.",
            &"x".repeat(64),
            &format!("{long}x"),
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_hostnames_are_host_names() {
        let s = Serial::parse("D83ADD36").unwrap();
        assert_eq!(Hostname::for_serial(&s).as_str(), "pi-d83add36");
        let m = Mac::parse("52:54:00:12:34:56").unwrap();
        assert_eq!(Hostname::for_mac(&m).as_str(), "pi-525400123456");
        for h in [Hostname::for_serial(&s), Hostname::for_mac(&m)] {
            assert_eq!(
                Hostname::parse(h.as_str()),
                Ok(h.clone()),
                "passes its own parser"
            );
        }
    }

    #[test]
    fn claimed_full_serials_end_in_the_short_one() {
        let short = Serial::parse("d83add36").unwrap();
        assert_eq!(
            FullSerial::claimed_for("10000000D83ADD36", &short)
                .unwrap()
                .unwrap()
                .as_str(),
            "10000000d83add36"
        );
        let err = FullSerial::claimed_for("10000000d83add37", &short).unwrap_err();
        assert!(err.to_string().contains("short serial"), "{err}");
        assert_eq!(
            FullSerial::claimed_for("D83ADD36", &short),
            Ok(None),
            "8 digits are not full"
        );
        assert!(FullSerial::claimed_for("d83add37", &short).is_err());
    }

    #[test]
    fn ids_travel_as_text_through_their_parser() {
        let s: Serial = serde_json::from_str(r#""D83ADD36""#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""d83add36""#);
        let e = serde_json::from_str::<Mac>(r#""nope""#).unwrap_err();
        assert!(e.to_string().contains("invalid MAC address"), "{e}");
    }

    #[test]
    fn image_names() {
        for ok in ["ubuntu-arm64", "debian_12.5", "A1"] {
            assert!(ImageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".import-x-1234abcd",
            "-rf",
            "--help",
            "_x",
            "a/b",
            "../x",
            "a b",
            "x\0",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn machine_ids() {
        let id = "0123456789ABCDEF0123456789abcdef";
        assert_eq!(
            MachineId::parse(id).unwrap().as_str(),
            id.to_ascii_lowercase()
        );
        for bad in ["", &"0".repeat(32), &"g".repeat(32), &"a".repeat(31)] {
            assert!(MachineId::parse(bad).is_err(), "{bad:?}");
        }
        let a = MachineId::derived_from("10000000d83add36");
        assert_eq!(a, MachineId::derived_from("10000000d83add36"), "stable");
        assert_ne!(a, MachineId::derived_from("10000000d83add37"));
        assert!(MachineId::parse(a.as_str()).is_ok());
    }
}
