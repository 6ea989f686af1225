//! Secrets that cannot leak by accident.

use std::fmt;

/// Holds a secret (an API key, a database password). `Debug` and `Display` print a placeholder,
/// so a secret that ends up in a log line or an error message shows as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The only way to read the secret; grep for it when auditing.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Parameter names whose values are secrets, in either connection-string form.
const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "passfile"];

/// Removes every password from a PostgreSQL connection string so it can be logged, in both of
/// the forms libpq and Strata accept:
/// * a URL: `postgres://user:secret@host/db?password=secret&sslpassword=secret`;
/// * key-value pairs: `host=h user=u password=secret` (values may be single-quoted, with
///   backslash escapes, and spaces may surround the `=`).
pub fn redact_url(url: &str) -> String {
    let trimmed = url.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") || url.contains("://") {
        redact_url_form(url)
    } else {
        redact_key_values(url)
    }
}

fn is_secret(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p))
}

fn redact_url_form(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    // The authority ends at the first '/', '?' or '#'; userinfo is what precedes its last '@'.
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at..]);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let (query, fragment) = match query.find('#') {
                Some(h) => query.split_at(h),
                None => (query, ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}{}{fragment}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn redact_key_values(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        // Copy blanks, then read a key up to '=' or a blank.
        if b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        out.push_str(key);
        while i < b.len() && b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        out.push('=');
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
        }
        // The value: quoted (to the closing quote, honouring backslashes) or to the next blank.
        let value_start = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(b.len());
        }
        if is_secret(key) {
            out.push_str("***");
        } else {
            out.push_str(&s[value_start..i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn passwords_are_removed_from_database_urls() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite"), "sqlite");
    }

    #[test]
    fn every_form_of_a_password_is_removed() {
        let cases = [
            ("postgres://u@h/db?password=hunter2", "postgres://u@h/db?password=***"),
            (
                "postgresql://u@h/db?sslmode=require&PASSWORD=hunter2&x=1",
                "postgresql://u@h/db?sslmode=require&PASSWORD=***&x=1",
            ),
            (
                "postgres://u:hunter2@h:5432/db?sslpassword=hunter2#frag",
                "postgres://u:***@h:5432/db?sslpassword=***#frag",
            ),
            ("postgres://u:p%40ss:hunter2@h/db", "postgres://u:***@h/db"),
            ("host=h user=u password=hunter2 dbname=db", "host=h user=u password=*** dbname=db"),
            ("host=h password = hunter2", "host=h password = ***"),
            ("password='hunter2 with \\' quote' host=h", "password=*** host=h"),
            ("host=h sslpassword=hunter2", "host=h sslpassword=***"),
            ("password=hunter2\\ escaped host=h", "password=*** host=h"),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("hunter2"), "{input} -> {got}");
        }
    }
}
