//! Database URLs without their passwords, for logs and errors.

/// `url` without its password, for logs and errors: the user's in the authority (up to the
/// last `@`, since a password may hold `/`, `?` or `@` unescaped) and any `password=`
/// parameter (its key in any case or percent-encoded, as the driver reads it); all but the
/// scheme where an `@` follows a query that names a password. It errs on the side of hiding
/// too much.
#[must_use]
pub fn redact_url(url: &str) -> String {
    redact_url_with(url, |raw_key, key, valued| {
        (valued && key.eq_ignore_ascii_case("password")).then(|| format!("{raw_key}=***"))
    })
}

/// `url` with its user info's password hidden (as [`redact_url`]) and each query parameter as
/// `shown` makes it from its key as written, its key decoded, and whether it has a
/// value: `None` keeps the parameter as written.
pub(crate) fn redact_url_with(url: &str, shown: impl Fn(&str, &str, bool) -> Option<String>) -> String {
    let Some(colon) = url.find(':') else {
        return url.to_owned();
    };
    let scheme_end = if url[colon..].starts_with("://") {
        colon + 3
    } else {
        colon + 1
    };
    let (head, rest) = url.split_at(scheme_end);
    // An `@` after a `?` in a URL whose query names a password (`?password=p@ss`,
    // `?user=me@corp&password=...`) cannot be told from the user info's: hidden whole, host and
    // all (read as user info, the password or its end was shown).
    if let (Some(q), Some(at)) = (rest.find('?'), rest.rfind('@'))
        && q < at
        && percent_decoded(&rest[q..].replace('+', " "))
            .to_ascii_lowercase()
            .contains("password")
    {
        return format!("{head}***");
    }
    let rest = match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(c) => format!("{}:***{}", &rest[..c], &rest[at..]),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let redacted = match rest.split_once('?') {
        None => rest,
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| {
                    let (k, valued) = p.split_once('=').map_or((p, false), |(k, _)| (k, true));
                    // Decoded as the driver's query parser does (`+` is a space).
                    shown(k, &percent_decoded(&k.replace('+', " ")), valued).unwrap_or_else(|| p.to_owned())
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    };
    format!("{head}{redacted}")
}

/// `text` with its `%XX` escapes decoded (an invalid escape kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_redacted_url_keeps_everything_but_the_password() {
        for (url, shown) in [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgresql://u:p@h", "postgresql://u:***@h"),
            (
                "sqlite://data/volcast.db?mode=rwc",
                "sqlite://data/volcast.db?mode=rwc",
            ),
            ("sqlite:x.db", "sqlite:x.db"),
            // A password holding `/`, `?` or `@` unescaped, no `//`, an encoded or upper-case key.
            ("postgres://u:ab/cd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:ab?cd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a@b@h/db", "postgres://u:***@h/db"),
            ("postgres:/u:pw@h/db", "postgres:/u:***@h/db"),
            (
                "postgres://h/db?pass%77ord=secret",
                "postgres://h/db?pass%77ord=***",
            ),
            ("postgres://h/db?PASSWORD=secret", "postgres://h/db?PASSWORD=***"),
            // An `@` in a query's password: read as user info, its end was shown.
            ("postgres://db:5432/v?password=p@zq9", "postgres://***"),
            ("postgres://db/v?sslmode=x&Pass%77ord=a@b", "postgres://***"),
            // An `@` in a query's user name, its password after it.
            (
                "postgres://db:5432/v?user=me@corp.com&password=secret",
                "postgres://***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
