//! The decision log: every answer of the risk routes is appended to the store before it is
//! returned, hash-chained and signed, so an auditor can look it up, replay it and prove nobody
//! edited it.
//!
//! - [`Signer`]: the service's Ed25519 key (`--signing-key`), generated on first start.
//! - [`DecisionBody`]: what a record says; its exact JSON text is hashed (SHA-256) and the digest
//!   signed. It holds its `seq` and the previous record's hash: the chain.
//! - [`log::DecisionLog`]: the one writer that numbers, chains, signs and appends records in
//!   batches (one transaction per batch).
//! - [`verify`]: the chain and signature check of `bin/verify` (a store or an export).
//! - [`replay`]: a decision recomputed from its recorded inputs with its recorded artifact.

pub mod decide;
pub mod log;
pub mod replay;
pub mod verify;

pub use decide::{DECISION_ID_HEADER, Logged, ToLog, id_header, log_decisions};

use std::path::Path;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use volcast_core::policy::RiskSettings;

use crate::auth::sha256_hex;
use crate::dto::CandleDto;
use crate::dto::policy::PolicyStatus;

/// Version of [`DecisionBody`]'s layout.
pub const BODY_VERSION: u32 = 1;

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What can go wrong with the signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("signing key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 key, or the generator failed.
    #[error("signing key {0}: not an Ed25519 PKCS#8 (v2) key")]
    Invalid(String),
    /// Others than its owner may read or write the file: whoever can read it can sign records
    /// the verifier accepts.
    #[error(
        "signing key {path}: mode {mode:o} lets others than its owner read or write it; make it \
         owner-only (chmod 600), and treat the key as exposed if others could read it"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// The service's Ed25519 signing key.
#[derive(Debug)]
pub struct Signer {
    pair: Ed25519KeyPair,
    /// First 16 hex digits of the SHA-256 of the public key.
    pub key_id: String,
    /// The public key, hex.
    pub public_hex: String,
}

impl Signer {
    fn of_pkcs8(der: &[u8], name: &str) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::Invalid(name.to_owned()))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(Self {
            pair,
            key_id: key_id(&public),
            public_hex: hex::encode(public),
        })
    }

    /// A fresh key and its PKCS#8 document.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the system's generator fails.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| KeyError::Invalid("(generated)".into()))?;
        Ok((
            Self::of_pkcs8(doc.as_ref(), "(generated)")?,
            doc.as_ref().to_vec(),
        ))
    }

    /// The key in `path`, or a new one written there (mode 0600, its directory created) when
    /// the file does not exist; and whether it was created.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read, parsed or written, or (Unix) when others than
    /// its owner may read or write it.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let name = path.display().to_string();
        let io = |source| KeyError::Io {
            path: name.clone(),
            source,
        };
        match std::fs::read(path) {
            Ok(der) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        return Err(KeyError::Exposed { path: name, mode });
                    }
                }
                Ok((Self::of_pkcs8(&der, &name)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (signer, der) = Self::generate()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &der).map_err(io)?;
                Ok((signer, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The signature of a record's hash (hex of the 32-byte digest), hex.
    #[must_use]
    pub fn sign(&self, hash_hex: &str) -> String {
        hex::encode(self.pair.sign(&digest_bytes(hash_hex)))
    }
}

/// Creates `path` readable by its owner only and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The digest a hex hash names (zeros where it is not 64 hex digits: such a record fails).
fn digest_bytes(hash_hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if hex::decode_to_slice(hash_hex, &mut out).is_err() {
        out = [0u8; 32];
    }
    out
}

/// A key's id: the first 16 hex digits of its SHA-256.
#[must_use]
pub fn key_id(public: &[u8]) -> String {
    sha256_hex(public)[..16].to_owned()
}

/// Whether `public_hex` is the key named `id` (its id is derived from it): a store row that
/// pairs an id with another key (the table altered to swap in a forger's key) names no key.
#[must_use]
pub fn key_named(id: &str, public_hex: &str) -> bool {
    hex::decode(public_hex).is_ok_and(|public| key_id(&public) == id)
}

/// Whether `signature_hex` is `public_hex`'s Ed25519 signature of the digest `hash_hex`.
#[must_use]
pub fn signature_ok(public_hex: &str, hash_hex: &str, signature_hex: &str) -> bool {
    let (Ok(public), Ok(sig)) = (hex::decode(public_hex), hex::decode(signature_hex)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&digest_bytes(hash_hex), &sig)
        .is_ok()
}

/// The exact candle window a decision was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CandleWindow {
    /// [`window_hash`] of the candles, hex (the key of their JSON in `decision_inputs`).
    pub hash: String,
    /// Candles.
    pub count: usize,
    /// First candle's open time, Unix ms.
    pub first_open_time: Option<i64>,
    /// Last candle's open time, Unix ms.
    pub last_open_time: Option<i64>,
    /// `request` (the caller's) or `store` (the service's own market data).
    pub source: String,
}

/// BLAKE3 of candles' exact values: `volcast-candles-v1`, then per candle its open time and
/// open, high, low, close, volume, quote volume as 8 little-endian bytes each (IEEE 754 bits for
/// the prices and volumes), hex. As exact as hashing their JSON, and about 20 times cheaper:
/// it runs on every risk answer.
#[must_use]
pub fn window_hash(candles: &[CandleDto]) -> String {
    const TAG: &[u8] = b"volcast-candles-v1";
    let mut bytes = Vec::with_capacity(TAG.len() + 56 * candles.len());
    bytes.extend_from_slice(TAG);
    for c in candles {
        bytes.extend_from_slice(&c.open_time.to_le_bytes());
        for x in [c.open, c.high, c.low, c.close, c.volume, c.quote_volume] {
            bytes.extend_from_slice(&x.to_bits().to_le_bytes());
        }
    }
    blake3::hash(&bytes).to_hex().to_string()
}

/// A candle window as the log keeps it: what the record says, and the candles (written to
/// `decision_inputs` as JSON by the log's writer, once per window).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// What the record says about it.
    pub window: CandleWindow,
    /// The candles.
    pub candles: std::sync::Arc<Vec<CandleDto>>,
}

impl Inputs {
    /// `candles` from `source` (`request` or `store`).
    #[must_use]
    pub fn of(candles: &[CandleDto], source: &str) -> Self {
        Self {
            window: CandleWindow {
                hash: window_hash(candles),
                count: candles.len(),
                first_open_time: candles.first().map(|c| c.open_time),
                last_open_time: candles.last().map(|c| c.open_time),
                source: source.to_owned(),
            },
            candles: std::sync::Arc::new(candles.to_vec()),
        }
    }

    /// The candles' JSON, as `decision_inputs` keeps it.
    #[must_use]
    pub fn json(&self) -> String {
        serde_json::to_string(self.candles.as_slice()).unwrap_or_default()
    }
}

/// The artifact (and the gate's policy) a decision was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionModel {
    /// Model id.
    pub id: String,
    /// SHA-256 of the artifact.
    pub hash: String,
    /// The policy the gate served.
    pub policy: PolicyStatus,
}

/// What a decision record says. Its JSON text is what is hashed and signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionBody {
    /// Layout version ([`BODY_VERSION`]).
    pub version: u32,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Decision id.
    pub id: String,
    /// Hash of the record before (64 zeros for the first).
    pub prev_hash: String,
    /// When it was made, Unix ms.
    pub at: i64,
    /// The same, RFC 3339.
    pub time: String,
    /// The API key's id (none while the service runs without keys).
    pub caller: Option<String>,
    /// The route: `POST /v1/risk/parameters`, `GET /v1/assets/{asset}/risk`, `POST /v1/risk/stress`...
    pub route: String,
    /// Asset.
    pub asset: String,
    /// The request as asked for this asset, its candles left out (they are `candles`).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The service's default settings then (they fill what the request leaves out).
    #[schema(value_type = Object)]
    pub defaults: RiskSettings,
    /// The candle window used.
    pub candles: CandleWindow,
    /// The artifact and policy.
    pub model: DecisionModel,
    /// The answer served, with its derivation.
    #[schema(value_type = Object)]
    pub answer: serde_json::Value,
    /// Id of the signing key.
    pub signer: String,
}

/// What kind of request a decision answered, by its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The risk parameters (`POST /v1/risk/parameters`, `GET /v1/assets/{asset}/risk`, the
    /// oracle-update routes).
    Parameters,
    /// `POST /v1/risk/stress`.
    Stress,
}

/// Route names recorded.
pub mod routes {
    /// `POST /v1/risk/parameters`.
    pub const PARAMETERS: &str = "POST /v1/risk/parameters";
    /// `GET /v1/assets/{asset}/risk`.
    pub const ASSET_RISK: &str = "GET /v1/assets/{asset}/risk";
    /// `POST /v1/risk/stress`.
    pub const STRESS: &str = "POST /v1/risk/stress";
    /// `POST /v1/risk/updates`.
    pub const UPDATES: &str = "POST /v1/risk/updates";
    /// `GET /v1/assets/{asset}/risk/updates`.
    pub const ASSET_UPDATES: &str = "GET /v1/assets/{asset}/risk/updates";
}

/// [`DecisionBody`] but for `request` and `answer`, borrowed: what the writer serializes.
#[derive(Debug, Serialize)]
pub struct BodyHead<'a> {
    /// [`DecisionBody::version`].
    pub version: u32,
    /// [`DecisionBody::seq`].
    pub seq: i64,
    /// [`DecisionBody::id`].
    pub id: &'a str,
    /// [`DecisionBody::prev_hash`].
    pub prev_hash: &'a str,
    /// [`DecisionBody::at`].
    pub at: i64,
    /// [`DecisionBody::time`].
    pub time: String,
    /// [`DecisionBody::caller`].
    pub caller: Option<&'a str>,
    /// [`DecisionBody::route`].
    pub route: &'a str,
    /// [`DecisionBody::asset`].
    pub asset: &'a str,
    /// [`DecisionBody::defaults`].
    pub defaults: &'a RiskSettings,
    /// [`DecisionBody::candles`].
    pub candles: &'a CandleWindow,
    /// [`DecisionBody::model`].
    pub model: &'a DecisionModel,
    /// [`DecisionBody::signer`].
    pub signer: &'a str,
}

impl BodyHead<'_> {
    /// The record's JSON text: this head with `request` and `answer` (JSON texts) added, without
    /// parsing them again.
    #[must_use]
    pub fn text(&self, request: &str, answer: &str) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.pop(); // the closing brace
        text.reserve(request.len() + answer.len() + 24);
        text.push_str(",\"request\":");
        text.push_str(request);
        text.push_str(",\"answer\":");
        text.push_str(answer);
        text.push('}');
        text
    }
}

impl DecisionBody {
    /// The kind of request, by route.
    #[must_use]
    pub fn kind(&self) -> Kind {
        if self.route == routes::STRESS {
            Kind::Stress
        } else {
            Kind::Parameters
        }
    }
}

/// A decision to log, before the writer numbers, chains and signs it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Decision id.
    pub id: String,
    /// When, Unix ms.
    pub at: i64,
    /// Caller's key id.
    pub caller: Option<String>,
    /// Route ([`routes`]).
    pub route: &'static str,
    /// Asset.
    pub asset: String,
    /// The request, candles left out, JSON.
    pub request: String,
    /// Defaults then.
    pub defaults: RiskSettings,
    /// The candles.
    pub inputs: Inputs,
    /// The artifact and policy.
    pub model: DecisionModel,
    /// Where the artifact was loaded from.
    pub model_dir: String,
    /// The answer, JSON.
    pub answer: String,
}

/// A fresh decision id: `dec_`, the time in ms (12 hex digits) and 80 random bits (20 hex
/// digits). Ids made later sort later, so the log's id index grows at its end (a random id
/// made every insert touch a random page of it, slower as the log grows). The bits come from
/// the operating system's generator: a read key may fetch any decision by its id, so ids must
/// not be guessable from one's own (a fast generator's next outputs can be).
#[must_use]
pub fn new_id(at_ms: i64) -> String {
    use ring::rand::SecureRandom as _;
    let mut random = [0_u8; 10];
    if ring::rand::SystemRandom::new().fill(&mut random).is_err() {
        // The system's generator failed (it does not on the platforms served): still unique.
        tracing::warn!("the system's random generator failed; a decision id from a fast one");
        fastrand::fill(&mut random);
    }
    format!("dec_{:012x}{}", at_ms.max(0), hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_sort_by_time_and_do_not_repeat() {
        let ids: Vec<String> = (0..10_000).map(|i| new_id(1_700_000_000_000 + i / 100)).collect();
        for id in &ids {
            assert_eq!(id.len(), 4 + 12 + 20, "{id}");
            assert!(id.starts_with("dec_018bcfe5"), "{id}");
            assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert!(
            ids.windows(2).all(|w| w[0][..16] <= w[1][..16]),
            "later ids sort later"
        );
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(
            new_id(-5).starts_with("dec_000000000000"),
            "a time before 1970 is taken as 0"
        );
    }

    #[test]
    fn signatures_check_against_the_signer_and_nothing_else() {
        let (signer, der) = Signer::generate().unwrap();
        let hash = sha256_hex(b"record");
        let sig = signer.sign(&hash);
        assert!(signature_ok(&signer.public_hex, &hash, &sig));
        assert!(!signature_ok(&signer.public_hex, &sha256_hex(b"other"), &sig));
        let (other, _) = Signer::generate().unwrap();
        assert!(!signature_ok(&other.public_hex, &hash, &sig));
        assert_ne!(signer.key_id, other.key_id);
        // The key round-trips through its file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pk8");
        let (created, was_new) = Signer::load_or_create(&path).unwrap();
        assert!(was_new);
        let (loaded, was_new) = Signer::load_or_create(&path).unwrap();
        assert!(!was_new);
        assert_eq!(created.public_hex, loaded.public_hex);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            // A key others may read (a checkout, a copy with default permissions) is refused.
            for mode in [0o644, 0o640, 0o602] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
                let e = Signer::load_or_create(&path).unwrap_err();
                assert!(matches!(e, KeyError::Exposed { .. }), "{mode:o}: {e}");
                assert!(e.to_string().contains(&format!("mode {mode:o}")), "{e}");
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert_eq!(
                Signer::load_or_create(&path).unwrap().0.public_hex,
                created.public_hex
            );
        }
        std::fs::write(dir.path().join("bad"), b"not a key").unwrap();
        assert!(Signer::load_or_create(&dir.path().join("bad")).is_err());
        assert!(!der.is_empty());
    }
}
