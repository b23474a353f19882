//! Request paths with placeholders, filled in per request.

use std::fmt::{self, Write as _};

/// The largest `N` of `{rand:N}`.
const MAX_RAND: u64 = 1_000_000_000;

/// A path and query with placeholders: `{rand:N}` (a number below `N`, so `N`
/// distinct paths: the cache's working set), `{seq}` (the request's sequence number:
/// never twice the same) and `{tenant}` (the tenant's slug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

/// A piece of a [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Text(String),
    /// `{rand:N}`.
    Rand(u64),
    /// `{seq}`.
    Seq,
    /// `{tenant}`.
    Tenant,
}

impl PathTemplate {
    /// Parses a template.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: not starting with `/`, an unknown or unclosed
    /// placeholder, characters a request target may not hold.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("\"{text}\" must start with '/'"));
        }
        if text.len() > 4096 {
            return Err("longer than 4096 bytes".to_owned());
        }
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            push_text(&mut segments, &rest[..open])?;
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in \"{text}\""))?;
            let name = &rest[open + 1..open + close];
            segments.push(match name {
                "seq" => Segment::Seq,
                "tenant" => Segment::Tenant,
                _ => match name.strip_prefix("rand:").map(str::parse::<u64>) {
                    Some(Ok(n)) if (1..=MAX_RAND).contains(&n) => Segment::Rand(n),
                    Some(_) => {
                        return Err(format!("{{{name}}}: N must be 1 to {MAX_RAND}"));
                    }
                    None => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; there are {{rand:N}}, {{seq}} and {{tenant}}"
                        ));
                    }
                },
            });
            rest = &rest[open + close + 1..];
        }
        push_text(&mut segments, rest)?;
        Ok(Self { segments })
    }

    /// The pieces.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Writes the path for one request into `out` (cleared first).
    pub fn render(&self, out: &mut String, rand: impl FnMut(u64) -> u64, seq: u64, tenant: &str) {
        let mut rand = rand;
        out.clear();
        for segment in &self.segments {
            // Writing to a String cannot fail.
            let _ = match segment {
                Segment::Text(text) => out.write_str(text),
                Segment::Rand(n) => write!(out, "{}", rand(*n)),
                Segment::Seq => write!(out, "{seq}"),
                Segment::Tenant => out.write_str(tenant),
            };
        }
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => f.write_str(text)?,
                Segment::Rand(n) => write!(f, "{{rand:{n}}}")?,
                Segment::Seq => f.write_str("{seq}")?,
                Segment::Tenant => f.write_str("{tenant}")?,
            }
        }
        Ok(())
    }
}

/// Adds literal text, refusing what a request target cannot hold.
fn push_text(segments: &mut Vec<Segment>, text: &str) -> Result<(), String> {
    if let Some(bad) = text
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '#' | '}'))
    {
        return Err(format!(
            "{bad:?} cannot be in a request path (percent-encode it)"
        ));
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text.to_owned()));
    }
    Ok(())
}
