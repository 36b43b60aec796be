//! The outbound-HTTP grant (`spec.capabilities.outboundHosts`) as a pure decision: may this
//! request's authority be contacted? Patterns are `host`, `host:port`, `*.domain` or `*`.

/// One entry of `outboundHosts`, parsed once at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Any,
    /// `*.example.com`: any subdomain (not `example.com` itself), any port.
    Suffix(String),
    /// `api.example.com` (any port) or `api.example.com:8443` (that port only).
    Exact {
        host: String,
        port: Option<u16>,
    },
}

impl HostPattern {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(domain) = s.strip_prefix("*.") {
            if domain.is_empty() || domain.contains(['*', ':', '/']) {
                return Err(format!("{s:?}: expected *.domain"));
            }
            return Ok(HostPattern::Suffix(format!(".{domain}")));
        }
        if s.is_empty() || s.contains(['*', '/', '@']) {
            return Err(format!("{s:?}: expected host, host:port, *.domain or *"));
        }
        match split_host_port(&s) {
            (host, Some(port)) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("{s:?}: port must be a number 0-65535"))?;
                Ok(HostPattern::Exact {
                    host: host.to_owned(),
                    port: Some(port),
                })
            }
            (host, None) => Ok(HostPattern::Exact {
                host: host.to_owned(),
                port: None,
            }),
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact { host: h, port: p } => h == host && p.is_none_or(|p| p == port),
        }
    }
}

/// Splits `host:port` (also `[v6]:port`); a bare IPv6 address has no port.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
}

/// Whether a request to `authority` (`host[:port]`, as in the URI) with the given scheme's
/// default port is allowed by any pattern.
pub(crate) fn allowed(patterns: &[HostPattern], authority: &str, default_port: u16) -> bool {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = split_host_port(&authority);
    let port = match port {
        Some(p) => match p.parse() {
            Ok(p) => p,
            Err(_) => return false,
        },
        None => default_port,
    };
    patterns.iter().any(|p| p.allows(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|s| HostPattern::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allowed(&[], "example.com", 443));
    }

    #[test]
    fn exact_host_any_port_or_one_port() {
        let p = pats(&["api.example.com", "127.0.0.1:8080"]);
        assert!(allowed(&p, "api.example.com", 443));
        assert!(allowed(&p, "API.example.com:8443", 443));
        assert!(allowed(&p, "127.0.0.1:8080", 80));
        assert!(!allowed(&p, "127.0.0.1:8081", 80));
        assert!(!allowed(&p, "127.0.0.1", 80));
        assert!(!allowed(&p, "evil.com", 443));
        assert!(!allowed(&p, "api.example.com.evil.com", 443));
    }

    #[test]
    fn wildcards() {
        let p = pats(&["*.example.com"]);
        assert!(allowed(&p, "a.example.com", 443));
        assert!(allowed(&p, "a.b.example.com:1", 443));
        assert!(!allowed(&p, "example.com", 443));
        assert!(!allowed(&p, "badexample.com", 443));
        assert!(allowed(&pats(&["*"]), "anything:1", 80));
    }

    #[test]
    fn ipv6_and_bad_patterns() {
        let p = pats(&["[::1]:8080"]);
        assert!(allowed(&p, "[::1]:8080", 80));
        assert!(!allowed(&p, "[::1]:8081", 80));
        assert!(HostPattern::parse("a.com:http").is_err());
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("a*.com").is_err());
        assert!(!allowed(&pats(&["a.com"]), "a.com:notaport", 80));
    }
}
