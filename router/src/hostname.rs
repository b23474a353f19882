//! Hostname normalisation: the one place that decides what a `Host` header,
//! an SNI name or a configured domain *means*.
//!
//! The rules (SPEC, "Tenant resolution"): lowercase; a port and one trailing
//! dot are removed; internationalised names are converted to their ASCII
//! (punycode) form by UTS #46; IP literals are rejected where a name is
//! required; RFC 1035/1123 limits apply (labels of 1–63 letters, digits and
//! inner hyphens, at most 253 characters in all).
//!
//! The common case — a lowercase ASCII name, maybe with a port — returns a
//! borrowed slice of the input and allocates nothing, because it runs on
//! every request.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest hostname, in octets of its ASCII form, without the trailing dot.
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label of a hostname.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable hostname.
///
/// Messages never repeat the input: a `Host` header is attacker-controlled,
/// and the error may end up in a response or a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing left once the port and trailing dot are removed.
    #[error("hostname is empty")]
    Empty,
    /// Longer than [`MAX_HOSTNAME_LEN`] once in ASCII form.
    #[error("hostname is {len} characters long; at most {MAX_HOSTNAME_LEN} are allowed")]
    TooLong {
        /// Length of the normalised name.
        len: usize,
    },
    /// A label longer than [`MAX_LABEL_LEN`].
    #[error("label {index} is {len} characters long; at most {MAX_LABEL_LEN} are allowed")]
    LabelTooLong {
        /// Position of the label, counting from 1 on the left.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// Two dots in a row, a leading dot, or more than one trailing dot.
    #[error("hostname has an empty label")]
    EmptyLabel,
    /// A character that is not a letter, digit, hyphen or dot, and that
    /// IDNA mapping does not turn into one.
    #[error("hostname contains a character that is not allowed in a DNS name")]
    InvalidCharacter,
    /// A label that starts or ends with `-`.
    #[error("label {index} starts or ends with a hyphen")]
    HyphenAtLabelEdge {
        /// Position of the label, counting from 1 on the left.
        index: usize,
    },
    /// An IPv4 or IPv6 address where a name is required.
    #[error("an IP address is not a hostname")]
    IpLiteral,
    /// Something after the last `:` that is not a port number.
    #[error("port is not a number from 0 to 65535")]
    InvalidPort,
    /// A label with the `xn--` prefix that is not valid punycode, or a name
    /// that UTS #46 processing rejects for another reason.
    #[error("hostname is not a valid internationalised domain name")]
    Idna,
}

/// Normalises a hostname as it arrives in a `Host` header, an `:authority`,
/// an SNI extension or a configuration file.
///
/// Returns the input itself (minus any port and trailing dot) when it is
/// already normal, so the per-request path does not allocate.
///
/// # Errors
///
/// A [`HostError`] saying which rule the input breaks.
pub fn normalize(input: &str) -> Result<Cow<'_, str>, HostError> {
    let name = strip_port(input)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    match scan_ldh(name.as_bytes(), false)? {
        Scan::Lowercase => Ok(Cow::Borrowed(name)),
        Scan::Uppercase => Ok(Cow::Owned(name.to_ascii_lowercase())),
        Scan::NeedsIdna => {
            let ascii = to_ascii(name)?;
            match scan_ldh(ascii.as_bytes(), true)? {
                Scan::Lowercase => Ok(Cow::Owned(ascii)),
                // UTS #46 output is lowercase LDH; anything else is a bug
                // in the mapping we must not route on.
                Scan::Uppercase | Scan::NeedsIdna => Err(HostError::Idna),
            }
        }
    }
}

/// What one pass over a name found.
enum Scan {
    /// Lowercase LDH ASCII within every limit: already normal.
    Lowercase,
    /// Valid once lowercased.
    Uppercase,
    /// Non-LDH characters or an `xn--` label: UTS #46 decides.
    NeedsIdna,
}

/// Checks the RFC 1035/1123 shape of `name` in a single pass: labels of 1
/// to 63 letters, digits and inner hyphens, 253 characters in all, and a
/// last label that is not a number (`127.1`, `0x7f.1` are IPv4 in
/// disguise). This runs on every request, so it looks at each byte once.
/// `idna_done` accepts `xn--` labels as they are: UTS #46 checked them.
fn scan_ldh(name: &[u8], idna_done: bool) -> Result<Scan, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let mut upper = false;
    let mut start = 0;
    let mut index = 1;
    for i in 0..=name.len() {
        let b = name.get(i).copied().unwrap_or(b'.');
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => continue,
            b'A'..=b'Z' => {
                upper = true;
                continue;
            }
            b'.' => {}
            _ => return Ok(Scan::NeedsIdna),
        }
        let label = &name[start..i];
        match label.len() {
            0 => return Err(HostError::EmptyLabel),
            len if len > MAX_LABEL_LEN => return Err(HostError::LabelTooLong { index, len }),
            _ => {}
        }
        if label[0] == b'-' || label[label.len() - 1] == b'-' {
            return Err(HostError::HyphenAtLabelEdge { index });
        }
        if !idna_done && label.len() >= 4 && label[..4].eq_ignore_ascii_case(b"xn--") {
            return Ok(Scan::NeedsIdna);
        }
        start = i + 1;
        index += 1;
    }
    if name.len() > MAX_HOSTNAME_LEN {
        return Err(HostError::TooLong { len: name.len() });
    }
    let last = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
    if is_numeric_label(last) {
        return Err(HostError::IpLiteral);
    }
    Ok(if upper {
        Scan::Uppercase
    } else {
        Scan::Lowercase
    })
}

/// Splits off a `:port` suffix, rejecting IPv6 literals (bracketed or bare)
/// and ports that are not numbers.
fn strip_port(input: &str) -> Result<&str, HostError> {
    if input.starts_with('[') {
        return Err(HostError::IpLiteral);
    }
    let Some((host, port)) = input.rsplit_once(':') else {
        return Ok(input);
    };
    if host.contains(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        return Err(HostError::IpLiteral);
    }
    let valid_port = port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().map_or(port.is_empty(), |p| p <= 65_535);
    if !valid_port {
        return Err(HostError::InvalidPort);
    }
    Ok(host)
}

/// UTS #46 ToASCII with STD3 rules (letters, digits, hyphen only), so the
/// output is plain LDH ASCII, lowercase, punycode where needed.
fn to_ascii(name: &str) -> Result<String, HostError> {
    let ascii = Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::VerifyAllowRootDot,
        )
        .map_err(|_| classify_idna_failure(name))?;
    // UTS #46 maps some characters to a dot (U+3002 and friends), so the
    // mapped name may end with one even though the input's was removed.
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    Ok(ascii.to_owned())
}

/// Turns an opaque IDNA failure into the most specific error we can name.
fn classify_idna_failure(name: &str) -> HostError {
    if name.is_ascii() {
        if name
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            return HostError::InvalidCharacter;
        }
        if let Err(e) = scan_ldh(name.as_bytes(), true) {
            return e;
        }
    }
    HostError::Idna
}

/// True when the normalised name `name` is `parent` or lies below it, on a
/// label boundary.
pub(crate) fn is_within(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.'))
}

/// A label that URL parsers would read as a number (decimal, or `0x` hex).
fn is_numeric_label(label: &[u8]) -> bool {
    match label
        .strip_prefix(b"0x")
        .or_else(|| label.strip_prefix(b"0X"))
    {
        Some(digits) => digits.iter().all(u8::is_ascii_hexdigit),
        None => label.iter().all(u8::is_ascii_digit),
    }
}

/// A normalised DNS hostname: lowercase LDH ASCII, no port, no trailing dot,
/// never an IP address. Construct it with [`Hostname::parse`] or `FromStr`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(Box<str>);

impl Hostname {
    /// Parses and normalises `input`.
    ///
    /// # Errors
    ///
    /// A [`HostError`] saying which rule the input breaks.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        normalize(input).map(|n| Self(n.into()))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `parent` or lies below it (`a.b.example` is
    /// within `example` and `b.example`, not within `ample`).
    pub fn is_within(&self, parent: &Hostname) -> bool {
        is_within(self.as_str(), parent.as_str())
    }
}

impl FromStr for Hostname {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hostname({:?})", &*self.0)
    }
}

impl AsRef<str> for Hostname {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Hostname {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hostname {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <Cow<'de, str>>::deserialize(d)?;
        Hostname::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, HostError> {
        normalize(s).map(Cow::into_owned)
    }

    #[test]
    fn lowercase_names_are_borrowed_unchanged() {
        assert!(matches!(
            normalize("acme.app.example.test"),
            Ok(Cow::Borrowed("acme.app.example.test"))
        ));
        assert!(matches!(
            normalize("acme.example.test:8443"),
            Ok(Cow::Borrowed("acme.example.test"))
        ));
    }

    #[test]
    fn uppercase_port_and_trailing_dot_are_normalised() {
        assert_eq!(norm("ERP.Customer.COM.:443").unwrap(), "erp.customer.com");
        assert_eq!(norm("erp.customer.com.").unwrap(), "erp.customer.com");
        assert_eq!(norm("erp.customer.com:").unwrap(), "erp.customer.com");
    }

    #[test]
    fn unicode_names_become_punycode() {
        assert_eq!(norm("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(norm("BÜCHER.example.").unwrap(), "xn--bcher-kva.example");
        // Ideographic full stop is a label separator under UTS #46.
        assert_eq!(norm("bücher。example").unwrap(), "xn--bcher-kva.example");
        // Already-punycode input is validated and kept.
        assert_eq!(
            norm("XN--BCHER-KVA.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn invalid_punycode_is_rejected() {
        assert_eq!(norm("xn--abc.example"), Err(HostError::Idna));
        assert_eq!(
            norm("xn--.example"),
            Err(HostError::HyphenAtLabelEdge { index: 1 })
        );
        assert_eq!(norm("xn--zz-!!.example"), Err(HostError::InvalidCharacter));
        assert_eq!(norm("xn--ls8h.la").unwrap(), "xn--ls8h.la");
    }

    #[test]
    fn ip_literals_are_rejected() {
        for ip in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1",
            "0x7f.1",
            "[::1]",
            "[::1]:443",
            "::1",
            "fe80::1%eth0",
            "１２７.０.０.１",
        ] {
            assert_eq!(norm(ip), Err(HostError::IpLiteral), "{ip}");
        }
    }

    #[test]
    fn malformed_names_are_rejected_with_specific_errors() {
        assert_eq!(norm(""), Err(HostError::Empty));
        assert_eq!(norm("."), Err(HostError::Empty));
        assert_eq!(norm(":443"), Err(HostError::Empty));
        assert_eq!(norm("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(norm(".a.b"), Err(HostError::EmptyLabel));
        assert_eq!(norm("a.b.."), Err(HostError::EmptyLabel));
        assert_eq!(norm("a.b:http"), Err(HostError::InvalidPort));
        assert_eq!(norm("a.b:65536"), Err(HostError::InvalidPort));
        assert_eq!(norm("a.b:-1"), Err(HostError::InvalidPort));
        assert_eq!(norm("a_b.example"), Err(HostError::InvalidCharacter));
        assert_eq!(norm("a b.example"), Err(HostError::InvalidCharacter));
        assert_eq!(norm("a%2e.example"), Err(HostError::InvalidCharacter));
        assert_eq!(norm("user@a.example"), Err(HostError::InvalidCharacter));
        assert_eq!(
            norm("-a.example"),
            Err(HostError::HyphenAtLabelEdge { index: 1 })
        );
        assert_eq!(
            norm("a.example-"),
            Err(HostError::HyphenAtLabelEdge { index: 2 })
        );
    }

    #[test]
    fn length_limits_follow_rfc_1035() {
        let long_label = "a".repeat(300);
        assert_eq!(
            norm(&format!("x.{long_label}.example")),
            Err(HostError::LabelTooLong { index: 2, len: 300 })
        );
        let ok_label = "a".repeat(63);
        assert!(norm(&format!("{ok_label}.example")).is_ok());
        // 4 labels of 63 + 3 dots = 255 > 253.
        let long_name = [ok_label.as_str(); 4].join(".");
        assert_eq!(norm(&long_name), Err(HostError::TooLong { len: 255 }));
        let max_name = format!("{}.{}", [ok_label.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(max_name.len(), 253);
        assert!(norm(&max_name).is_ok());
        assert!(norm(&format!("{max_name}.")).is_ok());
    }

    #[test]
    fn hyphens_inside_labels_are_allowed() {
        assert_eq!(norm("r3---sn-abc.example").unwrap(), "r3---sn-abc.example");
    }

    #[test]
    fn error_messages_do_not_echo_the_input() {
        let err = norm("<script>.example").unwrap_err().to_string();
        assert!(!err.contains("script"), "{err}");
    }

    #[test]
    fn is_within_respects_label_boundaries() {
        let h = |s: &str| Hostname::parse(s).unwrap();
        assert!(h("a.app.example.test").is_within(&h("app.example.test")));
        assert!(h("app.example.test").is_within(&h("app.example.test")));
        assert!(!h("evilapp.example.test").is_within(&h("app.example.test")));
    }

    #[test]
    fn hostname_deserialises_normalised_and_rejects_bad_names() {
        let h: Hostname = serde_json::from_str("\"Shop.Example.COM.\"").unwrap();
        assert_eq!(h.as_str(), "shop.example.com");
        let err = serde_json::from_str::<Hostname>("\"10.0.0.1\"").unwrap_err();
        assert!(err.to_string().contains("IP address"), "{err}");
    }
}
