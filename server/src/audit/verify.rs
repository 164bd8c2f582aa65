//! The auditor's check of a decision log (a store's, or an export's lines): every record's hash
//! is its body's SHA-256, its body says what its row says, it follows the record before it
//! (sequence number and hash), and its signature is a trusted key's.

use std::collections::BTreeMap;

use volcast_store::DecisionRow;

use super::{DecisionBody, GENESIS, signature_ok};
use crate::auth::sha256_hex;

/// The first record that fails, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record seq {seq} (id {id}): {reason}")]
pub struct Failure {
    /// Its sequence number as stored.
    pub seq: i64,
    /// Its id as stored.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

/// The check, fed records in chain order.
#[derive(Debug)]
pub struct Verifier {
    /// Trusted public keys by key id.
    keys: BTreeMap<String, String>,
    prev: Option<(i64, String)>,
    /// The sequence number watched ([`Verifier::watch`]) and the hash it had.
    watched: Option<(i64, Option<String>)>,
    /// Records checked.
    pub checked: u64,
}

impl Verifier {
    /// A check trusting `keys` (key id, public key hex), from the start of the chain; a pair
    /// whose key is not the one its id names is not trusted ([`super::key_named`]).
    #[must_use]
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .filter(|(id, public)| super::key_named(id, public))
                .collect(),
            prev: None,
            watched: None,
            checked: 0,
        }
    }

    /// Checks the next record; its body, parsed.
    ///
    /// # Errors
    /// [`Failure`] naming it.
    pub fn check(&mut self, row: &DecisionRow) -> Result<DecisionBody, Failure> {
        let fail = |reason: String| Failure {
            seq: row.seq,
            id: row.id.clone(),
            reason,
        };
        let (want_seq, want_prev) = self
            .prev
            .as_ref()
            .map_or((1, GENESIS), |(s, h)| (s + 1, h.as_str()));
        if row.seq != want_seq {
            return Err(fail(if row.seq > want_seq {
                format!(
                    "expected seq {want_seq}: {} record(s) missing before it",
                    row.seq - want_seq
                )
            } else {
                format!("expected seq {want_seq}: records out of order or repeated")
            }));
        }
        let body = record_body(row).map_err(fail)?;
        if body.prev_hash != want_prev {
            return Err(fail(format!(
                "it chains to {} but the record before hashes to {want_prev}: a record was removed, \
                 inserted or reordered",
                body.prev_hash
            )));
        }
        record_signed(row, self.keys.get(&row.signer).map(String::as_str)).map_err(fail)?;
        self.prev = Some((row.seq, row.hash.clone()));
        if let Some((seq, seen)) = &mut self.watched
            && *seq == row.seq
        {
            *seen = Some(row.hash.clone());
        }
        self.checked += 1;
        Ok(body)
    }

    /// Remembers the hash of the record `seq` when it is checked (a pinned head).
    pub fn watch(&mut self, seq: i64) {
        self.watched = Some((seq, None));
    }

    /// Whether the record `seq` watched was checked with hash `hash`.
    #[must_use]
    pub fn saw(&self, seq: i64, hash: &str) -> bool {
        matches!(&self.watched, Some((s, Some(h))) if *s == seq && h == hash)
    }

    /// The last record checked: (seq, hash).
    #[must_use]
    pub fn head(&self) -> Option<&(i64, String)> {
        self.prev.as_ref()
    }
}

/// One record on its own: its hash is its body's SHA-256 and its body says what its row says;
/// its body, parsed.
///
/// # Errors
/// What is wrong, in words.
pub fn record_body(row: &DecisionRow) -> Result<DecisionBody, String> {
    let hash = sha256_hex(row.body.as_bytes());
    if hash != row.hash {
        return Err(format!(
            "its body hashes to {hash}, not its recorded hash {}: the record was edited",
            row.hash
        ));
    }
    let body: DecisionBody =
        serde_json::from_str(&row.body).map_err(|e| format!("its body does not parse: {e}"))?;
    let fields = [
        ("seq", body.seq.to_string(), row.seq.to_string()),
        ("id", body.id.clone(), row.id.clone()),
        ("at", body.at.to_string(), row.at.to_string()),
        ("asset", body.asset.clone(), row.asset.clone()),
        ("signer", body.signer.clone(), row.signer.clone()),
    ];
    if let Some((name, signed, stored)) = fields.iter().find(|(_, a, b)| a != b) {
        return Err(format!(
            "its row says {name} = {stored} but its signed body says {signed}"
        ));
    }
    Ok(body)
}

/// Whether the record's signature is its signer's, whose public key is `public` (`None`: a key
/// not trusted).
///
/// # Errors
/// What is wrong, in words.
pub fn record_signed(row: &DecisionRow, public: Option<&str>) -> Result<(), String> {
    let public = public.ok_or_else(|| format!("signed by {}, a key not trusted", row.signer))?;
    if signature_ok(public, &row.hash, &row.signature) {
        Ok(())
    } else {
        Err(format!("its signature is not {}'s", row.signer))
    }
}

/// Checks `rows` in order with `keys`; the number checked.
///
/// # Errors
/// The first [`Failure`].
pub fn verify_all<'a>(
    rows: impl IntoIterator<Item = &'a DecisionRow>,
    keys: impl IntoIterator<Item = (String, String)>,
) -> Result<u64, Failure> {
    let mut v = Verifier::new(keys);
    for r in rows {
        v.check(r)?;
    }
    Ok(v.checked)
}
