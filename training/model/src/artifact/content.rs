//! The metadata text an artifact's id hashes ([`hashed_text`]): computed from the file's own
//! bytes, not from this build's reading of them, so that an artifact keeps its id across builds
//! that add, drop or reorder metadata fields, and a build rolled back still loads what a newer
//! one wrote.

/// JSON whitespace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The metadata JSON `text` as [`super::save`] hashes it: the whitespace outside strings dropped
/// (a pretty-printed file and the compact text differ only there), the top-level `id` emptied
/// and the top-level `validation` scores emptied (`train` and `calibrate` write them in place after
/// saving). None for text that is not a JSON object.
#[must_use]
pub fn hashed_text(text: &str) -> Option<String> {
    let mut compact = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if is_space(b) {
            continue;
        }
        compact.push(b);
        if b == b'"' {
            // A string, copied as it is (UTF-8 continuation bytes are never `"` or `\`).
            loop {
                let c = bytes.next()?;
                compact.push(c);
                match c {
                    b'\\' => compact.push(bytes.next()?),
                    b'"' => break,
                    _ => {}
                }
            }
        }
    }
    blank_top_level(&compact)
}

/// `compact` (an object without whitespace) with its top-level `id` and `validation` values
/// replaced by `""` and `{}`.
fn blank_top_level(b: &[u8]) -> Option<String> {
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.push(b'{');
    let mut i = 1;
    if b.get(i) != Some(&b'}') {
        loop {
            let colon = string_end(b, i)?;
            if b.get(colon) != Some(&b':') {
                return None;
            }
            let end = value_end(b, colon + 1)?;
            out.extend_from_slice(&b[i..=colon]);
            match &b[i..colon] {
                b"\"id\"" => out.extend_from_slice(b"\"\""),
                b"\"validation\"" => out.extend_from_slice(b"{}"),
                _ => out.extend_from_slice(&b[colon + 1..end]),
            }
            i = end;
            if b.get(i) != Some(&b',') {
                break;
            }
            out.push(b',');
            i += 1;
        }
    }
    if b.get(i) != Some(&b'}') || i + 1 != b.len() {
        return None;
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// The index just past the string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let mut i = start + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index of the `,` or `}` that ends the value starting at `start`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i = string_end(b, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::hashed_text;

    #[test]
    fn the_hashed_text_ignores_layout_the_id_and_the_scores_only() {
        let value = serde_json::json!({
            "schema_version": 1,
            "id": "0123456789abcdef",
            "note": "a \"quoted\" id: {x}, with  spaces\\n",
            "data": [{"id": "nested, kept", "rows": [1, 2.5e-7]}],
            "validation": {"24": {"qlike": {"model": 0.5}}},
            "fit_until": "2021-12-31T23:00:00Z",
        });
        let compact = serde_json::to_string(&value).expect("serialises");
        let pretty = serde_json::to_string_pretty(&value).expect("serialises");
        let hashed = hashed_text(&pretty).expect("an object");
        assert_eq!(hashed_text(&compact).as_deref(), Some(hashed.as_str()));
        let mut blank = value.clone();
        blank["id"] = "".into();
        blank["validation"] = serde_json::json!({});
        assert_eq!(hashed, serde_json::to_string(&blank).expect("serialises"));
        // Any other change shows.
        let mut edited = value;
        edited["fit_until"] = "2020-12-31T23:00:00Z".into();
        assert_ne!(
            hashed_text(&serde_json::to_string(&edited).expect("serialises")),
            Some(hashed)
        );
        for bad in ["", "[]", "{", "{\"a\":1", "{\"a\" 1}", "{\"a\":1}x"] {
            assert_eq!(hashed_text(bad), None, "{bad}");
        }
        assert_eq!(hashed_text(" { } ").as_deref(), Some("{}"));
    }
}
