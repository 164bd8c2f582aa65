//! What the store checks in a PostgreSQL URL before connecting.

use crate::redact::redact_url_with;
use crate::{StoreError, redact_url};

/// The query parameters sqlx's PostgreSQL driver (0.8) reads; it ignores any other, with a
/// warning that logs the parameter's value. `options[NAME]` is read too.
const KNOWN_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Refuses a PostgreSQL URL with a query parameter the driver would ignore: a misspelt
/// `sslmode` (`ssl_mode=require`, `SSLMODE=verify-full`) would otherwise connect without the
/// encryption asked for, and a misspelt `password` would be logged whole by the driver's warning.
/// The URL is read by the parser sqlx uses; the refusal names the parameter, never its value.
///
/// # Errors
/// [`StoreError::Url`] for a URL sqlx cannot read or a parameter it would ignore.
pub(crate) fn check(url: &str) -> Result<(), StoreError> {
    let refused = |shown: String, why: String| StoreError::Url { url: shown, why };
    // A user or password holding `/`, `?` or `#` unescaped ends the URL parser's user info
    // there: the rest of the password would be read as the host, path or query (and named back
    // as an unknown parameter). `redact_url` hides everything up to the last `@`. An `@` in a
    // query value (`?user=alice@corp`) is no user info: the text before it holds a `=`.
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let before_at = url[after_scheme..]
        .rfind('@')
        .map(|at| &url[after_scheme..after_scheme + at]);
    if before_at.is_some_and(|b| b.contains(['/', '?', '#']) && !b.contains('=')) {
        return Err(refused(
            redact_url(url),
            "the user or password holds `/`, `?` or `#` unescaped, which ends the URL's user \
             there: percent-encode them (%2F, %3F, %23)"
                .to_owned(),
        ));
    }
    let parsed: sqlx::any::AnyConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| refused(redact_url(url), e.to_string()))?;
    let mut unknown: Vec<String> = Vec::new();
    for (key, _) in parsed.database_url.query_pairs() {
        if !known(&key) && !unknown.iter().any(|u| *u == key) {
            unknown.push(key.into_owned());
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    // Where part of a password may have been read as a key (one written unescaped in the query,
    // `?password=Tr0ub&Secret99`, or in an ambiguous user info), no key is said back.
    let secret_nearby = parsed.database_url.query_pairs().any(|(k, _)| {
        let k = k.to_ascii_lowercase();
        ["pass", "pwd", "secret"].iter().any(|p| k.contains(p))
    }) || before_at.is_some_and(|b| b.contains(['/', '?', '#']));
    // The URL as written, its password hidden, and the unknown parameters' values too (one may
    // be a password under a misspelt key), their keys too where they may be part of a secret.
    let shown = redact_url_with(url, |raw_key, key, valued| {
        if key.eq_ignore_ascii_case("password") && valued {
            return Some(format!("{raw_key}=***"));
        }
        match (known(key) || key.is_empty(), is_a_name(key) && !secret_nearby) {
            (true, _) => None,
            (false, true) if valued => Some(format!("{raw_key}=***")),
            (false, true) => None,
            (false, false) => Some("***".to_owned()),
        }
    });
    let one = unknown.len() == 1;
    let names = if secret_nearby {
        format!(
            "({} not named: the URL holds a password near them)",
            unknown.len()
        )
    } else {
        unknown
            .iter()
            .map(|n| {
                if is_a_name(n) {
                    format!("`{n}`")
                } else {
                    "(a name not a word)".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(refused(
        shown,
        format!(
            "unknown parameter{} {names}: the PostgreSQL driver would ignore {} (it reads {}, \
             options[NAME])",
            if one { "" } else { "s" },
            if one { "it" } else { "them" },
            KNOWN_PARAMETERS.join(", "),
        ),
    ))
}

/// Whether `key` reads as a parameter's name (said back in an error), not as text that may be a
/// secret.
fn is_a_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c))
}

/// Whether the driver reads `key`.
fn known(key: &str) -> bool {
    KNOWN_PARAMETERS.contains(&key) || key.strip_prefix("options[").is_some_and(|k| k.ends_with(']'))
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::StoreError;

    #[test]
    fn a_parameter_the_driver_would_ignore_is_refused_without_its_value() {
        for url in [
            "postgres://u:pw@h/db",
            "postgres://u@h/db?sslmode=require&application_name=volcast",
            "postgresql://h/db?user=u&password=pw&options[search_path]=volcast",
            "postgres:///db?host=/run/postgresql&port=5433&ssl-root-cert=/ca.pem",
            // An `@` in a query value is no user info.
            "postgres://h/db?user=alice@corp",
            "postgres://u@h/db?password=p@ss",
            "postgres:///db?host=/run/postgresql&user=u@x",
            "postgres://h/db?application_name=svc@host",
            "postgres://h/db?sslrootcert=/p@x/ca.pem",
        ] {
            assert!(check(url).is_ok(), "{url}: {:?}", check(url));
        }
        for (url, named, hidden) in [
            // A misspelt sslmode: connected without the encryption asked for.
            (
                "postgres://u:pw@h/db?ssl_mode=require",
                "parameter `ssl_mode`:",
                "pw",
            ),
            (
                "postgres://u@h/db?SSLMODE=verify-full",
                "parameter `SSLMODE`:",
                "verify-full",
            ),
            // A misspelt password key: its value would be logged by the driver.
            (
                "postgres://u@h/db?passwd=s3cret&sslmode=require",
                "parameter (1 not named: the URL holds a password near them):",
                "s3cret",
            ),
            (
                "postgres://u@h/db?PASSWORD=s3cret",
                "parameter (1 not named: the URL holds a password near them):",
                "s3cret",
            ),
            (
                "postgres://u:s3cret@h/db?x=1&sslmode=require&x=2",
                "parameter `x`:",
                "s3cret",
            ),
            ("postgres://h/db?a=1&b=2&a=3", "parameters `a`, `b`:", "=1"),
        ] {
            let Err(e @ StoreError::Url { .. }) = check(url) else {
                panic!("{url}: not refused")
            };
            let said = e.to_string();
            assert!(said.contains(&format!("unknown {named}")), "{said}");
            assert!(!said.contains(hidden), "{said}");
        }
        // Kept: the known parameters' values, so what is wrong can be seen.
        let said = check("postgres://u@h/db?sslmode=require&ssl_mode=require")
            .map_err(|e| e.to_string())
            .expect_err("refused");
        assert!(said.contains("sslmode=require&ssl_mode=***"), "{said}");
        assert!(said.contains("it reads sslmode, ssl-mode,"), "{said}");
        // A password holding `/`, `?` or `#` unescaped: the URL parser ends the user info there
        // and would read the rest as host, path or query (its part after `?` was then named back
        // as an unknown parameter). Refused, the whole user info hidden.
        for url in [
            "postgres://u:?s3cret@h/db",
            "postgres://u:12/ab?s3cret@h/db",
            "postgres://u:a#s3cret@h/db?sslmode=require",
        ] {
            let said = check(url).map_err(|e| e.to_string()).expect_err("refused");
            assert!(said.contains("percent-encode them"), "{said}");
            assert!(!said.contains("s3cret"), "{said}");
        }
        // A password written unescaped in the query: the part after its `&` is read as a key,
        // and not said back.
        let said = check("postgres://u@h/db?password=Tr0ub&Secret99")
            .map_err(|e| e.to_string())
            .expect_err("refused");
        assert!(said.contains("not named") && !said.contains("Secret99"), "{said}");
        // A name that is no word is not said back (it may be a secret pasted in the wrong place).
        let said = check("postgres://h/db?s3cret%40x")
            .map_err(|e| e.to_string())
            .expect_err("refused");
        assert!(
            said.contains("(a name not a word)") && !said.contains("s3cret"),
            "{said}"
        );
    }
}
