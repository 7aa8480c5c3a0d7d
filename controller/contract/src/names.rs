//! Enums whose values have names (`tmpfs`, `install_failed`, `4.2`, …): one table per enum
//! declares the variants with their names, and [`named_enum!`](crate::named_enum) derives
//! `as_str`, `Display`, `FromStr` and `ALL` from it, so a name is written once. A plain
//! `macro_rules!` (no proc-macro crate): pi-init uses it too and must stay small.
//!
//! Serde names are the enum's own business (`#[serde(...)]` passes through); where they
//! equal the table's, a test says so.

use std::fmt;

/// A name that is none of an enum's names; says which ones there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What the enum is, in words (`overlay mode`).
    pub what: &'static str,
    pub given: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?} (expected ", self.what, self.given)?;
        let last = self.expected.len().saturating_sub(1);
        for (i, name) in self.expected.iter().enumerate() {
            match i {
                0 => {}
                _ if i == last => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            f.write_str(name)?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownName {}

/// For parsers whose errors are text (pi-init's command line: `v.parse()?`).
impl From<UnknownName> for String {
    fn from(e: UnknownName) -> String {
        e.to_string()
    }
}

/// Declares a `Copy` enum with a name per variant:
///
/// ```
/// pureboot_contract::named_enum! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Policy: "failure policy" {
///         /// Try again.
///         Retry = "retry",
///         Halt = "halt",
///     }
/// }
/// assert_eq!(Policy::Retry.as_str(), "retry");
/// assert_eq!("halt".parse::<Policy>().unwrap(), Policy::Halt);
/// assert_eq!(
///     "x".parse::<Policy>().unwrap_err().to_string(),
///     r#"unknown failure policy "x" (expected retry or halt)"#
/// );
/// assert_eq!(Policy::ALL, [Policy::Retry, Policy::Halt]);
/// ```
///
/// Attributes (derives, `#[serde]`, docs, `#[default]`) pass through to the enum and its
/// variants. The string after the colon names the enum in [`UnknownName`]'s message.
///
/// An open enum ends its table with `; Other(String)` (any variant name): a name that is
/// none of the table's parses to it, kept as given, so an answer from a newer peer still
/// parses. Its `as_str` borrows, `name` is the table's name (`None` for the open variant),
/// and its `FromStr` never fails.
///
/// ```
/// pureboot_contract::named_enum! {
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub enum Verb: "verb" {
///         Go = "go";
///         Unknown(String)
///     }
/// }
/// assert_eq!("go".parse::<Verb>(), Ok(Verb::Go));
/// assert_eq!("fly".parse::<Verb>(), Ok(Verb::Unknown("fly".into())));
/// assert_eq!(Verb::Unknown("fly".into()).as_str(), "fly");
/// assert_eq!(Verb::Unknown("fly".into()).name(), None);
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? ;
            $(#[$ometa:meta])* $other:ident(String) $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            $(#[$ometa])* $other(String)
        }

        impl $name {
            /// Every named value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The table's name, or the unknown one as given.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::$other(s) => s,
                }
            }

            /// The table's name; `None` for a name the table does not hold.
            pub fn name(&self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($text),)+
                    $name::$other(_) => None,
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = ::core::convert::Infallible;

            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                Ok(match s {
                    $($text => $name::$variant,)+
                    _ => $name::$other(s.into()),
                })
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::names::UnknownName {
                        what: $what,
                        given: s.into(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::UnknownName;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = |expected| UnknownName {
            what: "mode",
            given: "x".into(),
            expected,
        };
        assert_eq!(e(&["a"]).to_string(), r#"unknown mode "x" (expected a)"#);
        assert_eq!(
            e(&["a", "b", "c"]).to_string(),
            r#"unknown mode "x" (expected a, b or c)"#
        );
    }
}
