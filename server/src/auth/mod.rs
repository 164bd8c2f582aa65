//! Access control: bearer API keys with scopes, checked in constant time against their stored
//! SHA-256, a per-key rate limit, and the table of which scope each route needs.
//!
//! A key reads `vck_<id>_<secret>`: the id is public (logs, the decision log's `caller`), the
//! secret (32 random bytes, hex) is shown once by `keys create` and stored only as its SHA-256.
//! Keys live in the store ([`volcast_store::KeyStore`]); the server reads them at start and every
//! [`KEY_REFRESH`], so a key created or revoked with the CLI takes effect within that time.
//!
//! While the store holds no key at all, the server is open: it then listens on loopback only
//! (or anywhere with `--insecure-no-auth`), and says so at start ([`crate::run`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use volcast_store::ApiKeyRow;

use crate::error::ApiError;

pub mod guard;

/// How often the server reads the keys again.
pub const KEY_REFRESH: Duration = Duration::from_secs(2);

/// Prefix of every key.
pub const KEY_PREFIX: &str = "vck_";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Forecasts, the model card and validation, stored market data, decisions by id, the
    /// signing keys.
    Read,
    /// The risk routes (parameters, stress, oracle updates) and decision replays.
    Risk,
    /// Reloading the model and exporting the decision log.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 3] = [Self::Read, Self::Risk, Self::Admin];

    /// Its name in keys, the CLI and errors.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Risk => "risk",
            Self::Admin => "admin",
        }
    }

    /// The scope named `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s.trim())
    }
}

/// `read,risk` as scopes (at least one, each known).
///
/// # Errors
/// A message naming the unknown scope.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| Scope::parse(x).ok_or_else(|| format!("unknown scope {x:?}: use read, risk, admin")))
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("give at least one scope: read, risk, admin".into());
    }
    Ok(out)
}

/// `scopes` as stored: `read,risk`.
#[must_use]
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
}

/// SHA-256 of `bytes`, hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A key just made: its row (to store) and the bearer token (to show once).
#[derive(Debug)]
pub struct NewKey {
    /// The row.
    pub row: ApiKeyRow,
    /// `vck_<id>_<secret>`.
    pub token: String,
}

/// A character that shows nothing or reorders what follows it (Unicode's format characters,
/// bidirectional controls, line and paragraph separators, tags): `keys list` shows names as
/// given, and `char::is_control` lets these through, so a right-to-left override could make one
/// key's row read as another's.
#[must_use]
pub fn unseen(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// `name` as `keys list` shows it: a control, invisible or reordering character (one stored
/// before such names were refused, or written into the store by hand) as its `\u{...}` escape,
/// so no row reads as another's.
#[must_use]
pub fn shown_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || unseen(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Makes a key with random id and secret from the system's generator.
///
/// # Errors
/// A name that is empty or holds a control character (a tab or a newline would forge columns
/// or rows in `keys list`) or an invisible or reordering one (U+202E, U+200B...), or when the
/// system's generator fails.
pub fn new_key(
    name: &str,
    scopes: &[Scope],
    rate_per_minute: Option<u32>,
    now_ms: i64,
) -> Result<NewKey, String> {
    if name.trim().is_empty() || name.chars().any(|c| c.is_control() || unseen(c)) {
        return Err(format!(
            "a key's name must not be empty nor hold a control character (tab, newline) or an \
             invisible or reordering one (U+202E, U+200B...): {}",
            name.escape_debug()
        ));
    }
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| "the system's random generator failed".to_owned())?;
    let (id, secret) = (format!("k{}", hex::encode(id)), hex::encode(secret));
    Ok(NewKey {
        row: ApiKeyRow {
            id: id.clone(),
            name: name.to_owned(),
            scopes: scopes_text(scopes),
            secret_sha256: sha256_hex(secret.as_bytes()),
            created: now_ms,
            revoked: None,
            rate_per_minute: rate_per_minute.map(i64::from),
        },
        token: format!("{KEY_PREFIX}{id}_{secret}"),
    })
}

/// The scope a route needs (by path template), or `None` for the open ones: `/healthz`,
/// `/readyz`, `/metrics` (unless `metrics_need_key`), the docs and the OpenAPI document. A route
/// this table does not name needs `admin` (fail closed). Each path serves one method, so the
/// scope goes by the path alone: a wrong method with a key of the path's scope gets the router's
/// 405 `method_not_allowed`, not a 403 naming `admin`.
#[must_use]
pub fn route_scope(path: &str, metrics_need_key: bool) -> Option<Scope> {
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => None,
        p if p == "/docs" || p.starts_with("/docs/") => None,
        "/metrics" => metrics_need_key.then_some(Scope::Read),
        "/v1/model"
        | "/v1/model/validation"
        | "/v1/assets"
        | "/v1/assets/{asset}/candles"
        | "/v1/assets/{asset}/forecast/volatility"
        | "/v1/assets/{asset}/forecast/liquidity"
        | "/v1/assets/{asset}/anomalies"
        | "/v1/keys"
        | "/v1/decisions/{id}"
        | "/v1/forecast/volatility"
        | "/v1/forecast/liquidity"
        | "/v1/anomaly/scan" => Some(Scope::Read),
        "/v1/assets/{asset}/risk"
        | "/v1/assets/{asset}/risk/updates"
        | "/v1/risk/parameters"
        | "/v1/risk/stress"
        | "/v1/risk/updates"
        | "/v1/decisions/{id}/replay" => Some(Scope::Risk),
        _ => Some(Scope::Admin),
    }
}

/// Who made a request: the key's id, or none while the server is open.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key's id.
    pub key_id: Option<String>,
}

#[derive(Debug)]
struct Key {
    scopes: Vec<Scope>,
    secret_sha256: [u8; 32],
    revoked: bool,
    rate_per_minute: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The keys in force and each key's rate-limit bucket.
#[derive(Debug)]
pub struct Access {
    required: AtomicBool,
    keys: RwLock<HashMap<String, Key>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    default_rate_per_minute: u32,
    metrics_need_key: bool,
}

impl Access {
    /// Open until keys are set.
    #[must_use]
    pub fn new(default_rate_per_minute: u32, metrics_need_key: bool) -> Self {
        Self {
            required: AtomicBool::new(false),
            keys: RwLock::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            default_rate_per_minute: default_rate_per_minute.max(1),
            metrics_need_key,
        }
    }

    /// Whether keys are asked for (the store holds at least one, revoked or not).
    #[must_use]
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Relaxed)
    }

    /// The keys in force: every row of the store. Returns whether keys were asked for before.
    ///
    /// Once keys are asked for they stay asked for, also when the store later holds none (a
    /// table emptied by hand, a restored backup, a fresh database after a failover): every keyed
    /// route then refuses until keys are created. Only a restart opens the server again, and
    /// that is checked against the listening address (non-loopback needs keys or
    /// `--insecure-no-auth`).
    pub fn set_keys(&self, rows: &[ApiKeyRow]) -> bool {
        let keys = rows
            .iter()
            .filter_map(|r| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&r.secret_sha256, &mut hash).ok()?;
                Some((
                    r.id.clone(),
                    Key {
                        scopes: parse_scopes(&r.scopes).unwrap_or_default(),
                        secret_sha256: hash,
                        revoked: r.revoked.is_some(),
                        rate_per_minute: r
                            .rate_per_minute
                            .and_then(|x| u32::try_from(x).ok())
                            .unwrap_or(self.default_rate_per_minute)
                            .max(1),
                    },
                ))
            })
            .collect();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        self.required.fetch_or(!rows.is_empty(), Ordering::Relaxed)
    }

    /// Checks a request for `scope` with its `Authorization` header value.
    ///
    /// # Errors
    /// 401 [`ApiError::Unauthorized`] without a valid, unrevoked key; 403 [`ApiError::Forbidden`]
    /// for a key without the scope; 429 [`ApiError::RateLimited`] over the key's rate.
    pub fn check(
        &self,
        scope: Scope,
        authorization: Option<&[u8]>,
        now: Instant,
    ) -> Result<Caller, ApiError> {
        if !self.required() {
            return Ok(Caller::default());
        }
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_owned());
        let token = authorization
            .ok_or_else(|| unauthorized("this route needs an API key: `Authorization: Bearer vck_...`"))?;
        let token = std::str::from_utf8(token)
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| unauthorized("the Authorization header must read `Bearer <key>`"))?;
        let (id, secret) = token
            .trim()
            .strip_prefix(KEY_PREFIX)
            .and_then(|t| t.split_once('_'))
            .ok_or_else(|| unauthorized("invalid or revoked API key"))?;
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys.get(id);
        // The hash is compared even for an unknown id, so timing does not tell ids apart.
        let given: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let expected = key.map_or([0u8; 32], |k| k.secret_sha256);
        let matches: bool = given.ct_eq(&expected).into();
        let key = key
            .filter(|k| matches && !k.revoked)
            .ok_or_else(|| unauthorized("invalid or revoked API key"))?;
        if !key.scopes.contains(&scope) {
            return Err(ApiError::Forbidden {
                scope: scope.name(),
                key_id: id.to_owned(),
            });
        }
        let rate = key.rate_per_minute;
        drop(keys);
        self.take(id, rate, now)?;
        Ok(Caller {
            key_id: Some(id.to_owned()),
        })
    }

    /// One request from `id`'s bucket: a minute's rate refills it, it holds ten seconds' worth.
    fn take(&self, id: &str, rate_per_minute: u32, now: Instant) -> Result<(), ApiError> {
        let per_s = f64::from(rate_per_minute) / 60.0;
        let capacity = (per_s * 10.0).max(1.0);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(id.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        // A request that read the clock before a later one took the lock must not move the
        // bucket's clock back: the span between would be credited twice.
        if now > b.at {
            b.tokens = (b.tokens + (now - b.at).as_secs_f64() * per_s).min(capacity);
            b.at = now;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_s).ceil().max(1.0);
            Err(ApiError::RateLimited {
                key_id: id.to_owned(),
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }

    /// The scope the route at `path` (its template) needs, or `None` when it is open.
    #[must_use]
    pub fn scope_of(&self, path: &str) -> Option<Scope> {
        route_scope(path, self.metrics_need_key)
    }
}

/// The credentials of an `Authorization: Bearer <key>` header: the scheme is case-insensitive
/// (RFC 9110) and separated from the key by spaces or tabs.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_name_that_is_empty_or_holds_a_control_character_is_refused() {
        for name in [
            "",
            "  ",
            "a\nb",
            "a\tb",
            "a\u{7f}",
            "x\u{202e}y",
            "a\u{200b}",
            "\u{feff}k",
            "a\u{2029}b",
        ] {
            assert!(new_key(name, &[Scope::Read], None, 0).is_err(), "{name:?}");
        }
        assert!(new_key("risk-bot (ops team)", &[Scope::Read], None, 0).is_ok());
        assert!(new_key("équipe risque", &[Scope::Read], None, 0).is_ok());
        assert_eq!(shown_name("ops\u{202e}tob\tx é"), "ops\\u{202e}tob\\u{9}x é");
    }

    fn access_with(scopes: &[Scope], revoked: bool, rate: Option<u32>) -> (Access, String) {
        let access = Access::new(600, false);
        let mut k = new_key("test", scopes, rate, 0).unwrap();
        if revoked {
            k.row.revoked = Some(1);
        }
        access.set_keys(&[k.row]);
        (access, format!("Bearer {}", k.token))
    }

    #[test]
    fn a_keyed_server_stays_keyed_when_the_store_loses_its_keys() {
        let now = Instant::now();
        let open = Access::new(600, false);
        assert!(!open.set_keys(&[]));
        assert!(open.check(Scope::Admin, None, now).is_ok(), "no key ever: open");
        let (access, token) = access_with(&[Scope::Admin], false, None);
        assert!(access.check(Scope::Admin, Some(token.as_bytes()), now).is_ok());
        // The table emptied: nothing is served without a key, and the old key is gone.
        assert!(access.set_keys(&[]));
        assert!(access.required());
        for auth in [None, Some(token.as_bytes())] {
            assert!(matches!(
                access.check(Scope::Admin, auth, now),
                Err(ApiError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn keys_need_their_secret_their_scope_and_no_revocation() {
        let now = Instant::now();
        let (access, token) = access_with(&[Scope::Risk], false, None);
        assert!(access.check(Scope::Risk, Some(token.as_bytes()), now).is_ok());
        assert!(matches!(
            access.check(Scope::Read, Some(token.as_bytes()), now),
            Err(ApiError::Forbidden { .. })
        ));
        let wrong = format!("{}0", &token[..token.len() - 1]);
        let wrong = if wrong == token {
            format!("{}1", &token[..token.len() - 1])
        } else {
            wrong
        };
        for bad in [
            None,
            Some(wrong.as_str()),
            Some("Bearer vck_nope_00"),
            Some("Basic abc"),
        ] {
            assert!(matches!(
                access.check(Scope::Risk, bad.map(str::as_bytes), now),
                Err(ApiError::Unauthorized(_))
            ));
        }
        let (revoked, token) = access_with(&[Scope::Risk], true, None);
        assert!(matches!(
            revoked.check(Scope::Risk, Some(token.as_bytes()), now),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn a_key_over_its_rate_waits_as_long_as_a_token_takes() {
        let now = Instant::now();
        // 6 a minute: a bucket of 1 (ten seconds' worth), one token every 10 s.
        let (access, token) = access_with(&[Scope::Read], false, Some(6));
        assert!(access.check(Scope::Read, Some(token.as_bytes()), now).is_ok());
        match access.check(Scope::Read, Some(token.as_bytes()), now) {
            Err(ApiError::RateLimited { retry_after, .. }) => assert_eq!(retry_after.as_secs(), 10),
            other => panic!("expected 429, got {other:?}"),
        }
        let later = now + Duration::from_secs(10);
        assert!(access.check(Scope::Read, Some(token.as_bytes()), later).is_ok());
    }

    /// A request that read the clock before a later one took the bucket's lock does not move
    /// the bucket's clock back: the span between would be credited again.
    #[test]
    fn a_request_seen_late_does_not_turn_the_buckets_clock_back() {
        let t0 = Instant::now();
        let t10 = t0 + Duration::from_secs(10);
        let (access, token) = access_with(&[Scope::Read], false, Some(6));
        let check = |at| access.check(Scope::Read, Some(token.as_bytes()), at);
        assert!(check(t0).is_ok());
        assert!(check(t10).is_ok(), "a token refilled in 10 s");
        assert!(check(t0).is_err(), "the late request finds the bucket empty");
        assert!(check(t10).is_err(), "and the 10 s are not credited a second time");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer vck_a_b"), Some("vck_a_b"));
        assert_eq!(bearer_token("BEARER vck_a_b"), Some("vck_a_b"));
        assert_eq!(bearer_token("bearer\tvck_a_b"), Some("vck_a_b"));
        // Further blanks are trimmed by the caller.
        assert_eq!(bearer_token("Bearer   vck_a_b"), Some("  vck_a_b"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearervck_a_b"), None);
    }

    #[test]
    fn without_keys_everything_is_open_and_scopes_parse() {
        let access = Access::new(600, false);
        assert!(access.check(Scope::Admin, None, Instant::now()).is_ok());
        assert_eq!(
            parse_scopes("risk, read,risk").unwrap(),
            vec![Scope::Read, Scope::Risk]
        );
        assert!(parse_scopes("write").is_err());
        assert!(parse_scopes("").is_err());
        assert_eq!(route_scope("/metrics", false), None);
        assert_eq!(route_scope("/metrics", true), Some(Scope::Read));
        assert_eq!(route_scope("/v1/anything/new", false), Some(Scope::Admin));
    }
}
