//! The entries of `/computenodes`: compute node URIs and ranges, as the reference documents
//! them, and their expansion into endpoints.
//!
//! An entry is `http://HOST[:PORT]` or `https://...`, with an optional trailing `/`. HOST is a
//! host name, or an IPv4 address any of whose octets may be a range `a-b`
//! (`http://10.0.1-3.1-2:12805` is six nodes); PORT may be a range too (`http://1.1.1.1:10-12`,
//! the reference swagger's example), and is 12805 when absent. Expansion is capped, so that an
//! entry cannot name a million nodes.

use std::fmt;

/// The port of a compute node when an entry names none (the reference's).
pub const DEFAULT_PORT: u16 = 12805;
/// The most endpoints the entries of `/computenodes` may expand to.
pub const MAX_ENDPOINTS: usize = 1024;

/// Why an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    entry: String,
    reason: String,
}

impl fmt::Display for InvalidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid compute node entry `{}`: {}",
            self.entry.chars().take(200).collect::<String>(),
            self.reason
        )
    }
}

impl std::error::Error for InvalidEntry {}

/// An inclusive range of numbers, from `a` or `a-b`.
fn range(text: &str, max: u32, what: &str) -> Result<(u32, u32), String> {
    let number = |part: &str| -> Result<u32, String> {
        if part.is_empty() || part.len() > 5 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{part}` is not a {what}"));
        }
        let value: u32 = part
            .parse()
            .map_err(|_| format!("`{part}` is not a {what}"))?;
        if value > max {
            return Err(format!("{what} {value} is larger than {max}"));
        }
        Ok(value)
    };
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (number(low)?, number(high)?);
            if low > high {
                return Err(format!("the range `{text}` runs backwards"));
            }
            Ok((low, high))
        }
        None => {
            let value = number(text)?;
            Ok((value, value))
        }
    }
}

/// The hosts an entry's host part names.
fn hosts(text: &str) -> Result<Vec<String>, String> {
    let octets: Vec<&str> = text.split('.').collect();
    let looks_like_ipv4 = octets.len() == 4
        && octets.iter().all(|octet| {
            !octet.is_empty() && octet.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        });
    if looks_like_ipv4 {
        let mut hosts = vec![String::new()];
        for (index, octet) in octets.iter().enumerate() {
            let (low, high) = range(octet, 255, "IPv4 octet")?;
            let count = hosts.len() * (high - low + 1) as usize;
            if count > MAX_ENDPOINTS {
                return Err(format!("it names more than {MAX_ENDPOINTS} nodes"));
            }
            hosts = hosts
                .iter()
                .flat_map(|prefix| {
                    (low..=high).map(move |value| {
                        if index == 0 {
                            value.to_string()
                        } else {
                            format!("{prefix}.{value}")
                        }
                    })
                })
                .collect();
        }
        return Ok(hosts);
    }
    // A name whose last label is numeric is a mistyped address, never a host name.
    let numeric_last_label = text
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    let valid_name = !text.is_empty()
        && !numeric_last_label
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid_name {
        Ok(vec![text.to_ascii_lowercase()])
    } else {
        Err(format!(
            "`{text}` is neither a host name nor an IPv4 address (with ranges)"
        ))
    }
}

/// The endpoints (`scheme://host:port`) one entry names.
pub fn expand(entry: &str) -> Result<Vec<String>, InvalidEntry> {
    let invalid = |reason: String| InvalidEntry {
        entry: entry.to_owned(),
        reason,
    };
    let trimmed = entry.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| invalid("it must start with http:// or https://".to_owned()))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(invalid(format!(
            "the scheme `{scheme}` is not http or https"
        )));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            "it must be a scheme, a host and a port only, without path, query or user".to_owned(),
        ));
    }
    let (host, ports) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, range(port, 65535, "port").map_err(invalid)?),
        None => (rest, (u32::from(DEFAULT_PORT), u32::from(DEFAULT_PORT))),
    };
    if ports.0 == 0 {
        return Err(invalid("port 0 is not a port".to_owned()));
    }
    let hosts = hosts(host).map_err(invalid)?;
    let count = hosts.len() * (ports.1 - ports.0 + 1) as usize;
    if count > MAX_ENDPOINTS {
        return Err(invalid(format!("it names more than {MAX_ENDPOINTS} nodes")));
    }
    Ok(hosts
        .iter()
        .flat_map(|host| {
            let scheme = scheme.clone();
            (ports.0..=ports.1).map(move |port| format!("{scheme}://{host}:{port}"))
        })
        .collect())
}

/// The endpoints every entry names, in order and without repeats; refused as a whole when one
/// entry is invalid or all of them name too many nodes.
pub fn expand_all<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, InvalidEntry> {
    let mut endpoints: Vec<String> = Vec::new();
    for entry in entries {
        for endpoint in expand(entry)? {
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(InvalidEntry {
                entry: entry.to_owned(),
                reason: format!("the entries name more than {MAX_ENDPOINTS} nodes"),
            });
        }
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_ranges_expand_as_the_reference_documents() {
        assert_eq!(
            expand("http://1.0.1-3.1-2:12805").unwrap(),
            [
                "http://1.0.1.1:12805",
                "http://1.0.1.2:12805",
                "http://1.0.2.1:12805",
                "http://1.0.2.2:12805",
                "http://1.0.3.1:12805",
                "http://1.0.3.2:12805"
            ]
        );
    }

    #[test]
    fn port_ranges_host_names_and_the_default_port() {
        assert_eq!(
            expand("http://1.1.1.1:10-12").unwrap(),
            [
                "http://1.1.1.1:10",
                "http://1.1.1.1:11",
                "http://1.1.1.1:12"
            ]
        );
        assert_eq!(
            expand("https://Compute-0.o16n.svc/").unwrap(),
            ["https://compute-0.o16n.svc:12805"]
        );
    }

    #[test]
    fn malformed_and_huge_entries_are_refused() {
        for bad in [
            "",
            "1.1.1.1:12805",
            "ftp://1.1.1.1",
            "http://1.1.1.1:0",
            "http://1.1.1.1:70000",
            "http://1.1.1.3-1:80",
            "http://1.1.1.256",
            "http://user@host:1",
            "http://host:1/path",
            "http://-host-:1",
            "http://host:1-2-3",
            "http://1-255.1-255.1-255.1-255:1",
            "http://1.1.1.1:1-65535",
            "http://127.0.0.1-255.1-255.1:1",
            "http://1.1.1:1",
        ] {
            assert!(expand(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn all_entries_together_are_deduplicated_and_capped() {
        let endpoints = expand_all(["http://10.0.0.1-2:5", "http://10.0.0.2:5"]).unwrap();
        assert_eq!(endpoints, ["http://10.0.0.1:5", "http://10.0.0.2:5"]);
        let many: Vec<String> = (0..5)
            .map(|block| format!("http://10.{block}.0.0-255:5"))
            .collect();
        assert!(expand_all(many.iter().map(String::as_str)).is_err());
    }
}
