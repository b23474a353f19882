//! Identifier newtypes, so a slug can never be passed where a tenant id or a
//! hostname is expected, and every identifier is validated once, on the way
//! in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than the kind allows.
    #[error("must be 1 to {max} characters long (got {len})")]
    Length {
        /// The longest allowed.
        max: usize,
        /// What was given.
        len: usize,
    },
    /// A character outside the kind's alphabet.
    #[error("may only contain {allowed}")]
    Alphabet {
        /// The allowed characters, in words.
        allowed: &'static str,
    },
    /// Starts or ends with a character that may only appear inside.
    #[error("must start and end with a letter or digit")]
    Edge,
}

/// The rules of one identifier kind.
struct Rules {
    max: usize,
    allowed: &'static str,
    byte_ok: fn(u8) -> bool,
    /// Letters and digits only at both ends.
    alnum_edges: bool,
}

impl Rules {
    fn check(&self, s: &str) -> Result<(), IdError> {
        if s.is_empty() || s.len() > self.max {
            return Err(IdError::Length {
                max: self.max,
                len: s.len(),
            });
        }
        if !s.bytes().all(self.byte_ok) {
            return Err(IdError::Alphabet {
                allowed: self.allowed,
            });
        }
        let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
        if self.alnum_edges && !(alnum(s.as_bytes().first()) && alnum(s.as_bytes().last())) {
            return Err(IdError::Edge);
        }
        Ok(())
    }
}

fn lower_ldh(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
}

fn lower_token(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $rules:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            const RULES: Rules = $rules;

            /// Validates `s` as this kind of identifier.
            ///
            /// # Errors
            ///
            /// An [`IdError`] naming the rule `s` breaks.
            pub fn new(s: &str) -> Result<Self, IdError> {
                Self::RULES.check(s)?;
                Ok(Self(s.into()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A tenant's immutable, opaque id. It is sent upstream in `x-tenant-id`,
    /// so it is restricted to characters that are safe in a header value and
    /// a log line: ASCII letters, digits, `-`, `_`, `.` and `:`.
    TenantId,
    Rules {
        max: 64,
        allowed: "ASCII letters, digits, '-', '_', '.' and ':'",
        byte_ok: token,
        alnum_edges: true,
    }
);

identifier!(
    /// A tenant's slug: one DNS label (lowercase letters, digits, inner
    /// hyphens), used as `{slug}.{base_domain}`.
    Slug,
    Rules {
        max: 63,
        allowed: "lowercase letters, digits and '-' (a DNS label)",
        byte_ok: lower_ldh,
        alnum_edges: true,
    }
);

identifier!(
    /// A target's id: a shard or a dedicated cluster. Sent upstream in
    /// `x-tenant-target` and used as a metric label, so it is short and plain.
    TargetId,
    Rules {
        max: 64,
        allowed: "lowercase letters, digits, '-', '_' and '.'",
        byte_ok: lower_token,
        alnum_edges: true,
    }
);

identifier!(
    /// A deployment region, such as `eu-west`.
    RegionName,
    Rules {
        max: 32,
        allowed: "lowercase letters, digits and '-'",
        byte_ok: lower_ldh,
        alnum_edges: true,
    }
);

identifier!(
    /// A plan's name, such as `starter` or `enterprise`.
    PlanName,
    Rules {
        max: 64,
        allowed: "lowercase letters, digits, '-', '_' and '.'",
        byte_ok: lower_token,
        alnum_edges: true,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels() {
        assert!(Slug::new("acme-42").is_ok());
        assert_eq!(
            Slug::new("Acme"),
            Err(IdError::Alphabet {
                allowed: "lowercase letters, digits and '-' (a DNS label)"
            })
        );
        assert_eq!(Slug::new("-acme"), Err(IdError::Edge));
        assert_eq!(Slug::new(""), Err(IdError::Length { max: 63, len: 0 }));
        assert_eq!(
            Slug::new(&"a".repeat(64)),
            Err(IdError::Length { max: 63, len: 64 })
        );
    }

    #[test]
    fn tenant_ids_are_header_safe() {
        assert!(TenantId::new("t_01HZX3K9:eu").is_ok());
        assert!(TenantId::new("t 1").is_err());
        assert!(TenantId::new("t\r\nx-evil: 1").is_err());
    }

    #[test]
    fn identifiers_deserialise_with_validation() {
        let id: TargetId = serde_json::from_str("\"shard-eu-1\"").unwrap();
        assert_eq!(id.as_str(), "shard-eu-1");
        let err = serde_json::from_str::<RegionName>("\"EU West\"").unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }
}
