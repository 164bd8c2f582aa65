//! Loading candle files with polars: SPEC's per-asset files (`.csv`, `.csv.gz`, `.parquet`) and
//! Binance's own kline dumps (12 columns, no header), from one or several directories.
//!
//! Files with the same stem in several directories are one asset, joined in time order; where
//! two hold the same hour the first directory wins. Every file is checked against SPEC's
//! bad-input rules and a failure names the file, the field and the row.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;

use volcast_core::candles::{AssetCandles, Candle, CandleError, merge_sources, validate_candles};

/// SPEC's column names, in the order of [`Candle`]'s fields.
pub const COLUMNS: [&str; 7] = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
];

/// Positions of SPEC's columns in a Binance kline dump (open time, OHLC, volume, quote volume).
const BINANCE_POSITIONS: [usize; 7] = [0, 1, 2, 3, 4, 5, 7];

/// Open times above this are microseconds (Binance's spot dumps since 2025), not milliseconds.
const MICROSECOND_THRESHOLD: i64 = 100_000_000_000_000;

/// A data directory or file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Directory missing or unreadable.
    #[error("cannot read directory {path}: {error}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// File unreadable or not in a known layout.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A candle breaks SPEC's rules.
    #[error("{path}, {place}: {candle}")]
    Candle {
        /// The file.
        path: PathBuf,
        /// Where in the file, as an editor counts: its line in a CSV file (the header counted),
        /// its row in a Parquet file. The candle's own row is the 0-based index among the data.
        place: String,
        /// Row, field and rule.
        candle: CandleError,
    },
    /// An asset asked for is in none of the directories (an empty id: a stray comma).
    #[error("{}", if .0.trim().is_empty() {
        "an empty asset id was asked for (a stray comma in the list?)".to_owned()
    } else {
        format!("asset {} has no candle file in the data directories", .0)
    })]
    UnknownAsset(String),
    /// Two candle files whose asset ids differ only in case (`BTCUSDT`, `btcusdt`): one market
    /// that the pooled fits, the baselines and the point counts would count twice.
    #[error(
        "{first} and {second} name asset ids that differ only in case: one market would be counted twice; rename one"
    )]
    CaseClash {
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Two files in one directory claim the same asset.
    #[error("{first} and {second} are both asset {asset}: keep one per directory")]
    Ambiguous {
        /// Asset id.
        asset: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

pub(crate) fn file_error(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The asset id of a candle file (its stem without `.csv`, `.csv.gz`, `.parquet`), or None for
/// other files.
#[must_use]
pub fn asset_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    [".csv.gz", ".csv", ".parquet"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .filter(|stem| !stem.is_empty() && !stem.starts_with('.'))
        .map(str::to_owned)
}

/// Candle files of one directory by asset id.
///
/// # Errors
/// [`LoadError`] when the directory cannot be read or two files share a stem.
pub fn list_dir(dir: &Path) -> Result<BTreeMap<String, PathBuf>, LoadError> {
    let dir_error = |error| LoadError::Directory {
        path: dir.to_owned(),
        error,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let path = entry.map_err(dir_error)?.path();
        // Named as a candle file (as its name reads, even if not UTF-8) but unreadable as one:
        // refused, not skipped, or the asset would drop out of training or evaluation unseen.
        let lossy = PathBuf::from(
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        if asset_id(&lossy).is_none() {
            // `ETHUSDT.CSV.GZ`: named as candles but for its extension's case, which the
            // loaders match exactly; skipped, the asset would drop out without a word.
            if asset_id(Path::new(&lossy.to_string_lossy().to_lowercase())).is_some() {
                return Err(file_error(
                    &path,
                    "a candle file's extension in capitals: name it .csv, .csv.gz or .parquet",
                ));
            }
            continue;
        }
        let Some(id) = asset_id(&path) else {
            return Err(file_error(
                &path,
                "its name is not valid UTF-8 (an asset id must be)",
            ));
        };
        if !path.is_file() {
            return Err(file_error(
                &path,
                if path.is_dir() {
                    "a directory named as a candle file"
                } else {
                    "not a readable file (a broken link?)"
                },
            ));
        }
        if let Some(first) = files.insert(id.clone(), path.clone()) {
            return Err(LoadError::Ambiguous {
                asset: id,
                first,
                second: path,
            });
        }
    }
    Ok(files)
}

/// Loads every asset found in `dirs` (earlier directories win on duplicated hours), sorted by id.
///
/// # Errors
/// The first [`LoadError`] met.
pub fn load_dirs(dirs: &[PathBuf]) -> Result<Vec<AssetCandles>, LoadError> {
    load_assets(dirs, None)
}

/// Like [`load_dirs`], keeping only the assets named in `only` (when given).
///
/// # Errors
/// The first [`LoadError`] met, or [`LoadError::UnknownAsset`] for a name found in no directory.
pub fn load_assets(dirs: &[PathBuf], only: Option<&[String]>) -> Result<Vec<AssetCandles>, LoadError> {
    let mut by_asset: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut by_folded: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for dir in dirs {
        for (id, path) in list_dir(dir)? {
            let (seen, first) = by_folded
                .entry(id.to_lowercase())
                .or_insert_with(|| (id.clone(), path.clone()));
            if *seen != id {
                return Err(LoadError::CaseClash {
                    first: first.clone(),
                    second: path,
                });
            }
            by_asset.entry(id).or_default().push(path);
        }
    }
    if let Some(only) = only {
        if let Some(missing) = only.iter().find(|a| !by_asset.contains_key(*a)) {
            return Err(LoadError::UnknownAsset(missing.clone()));
        }
        by_asset.retain(|id, _| only.contains(id));
    }
    by_asset
        .into_par_iter()
        .map(|(asset, paths)| {
            let sources = paths
                .iter()
                .map(|p| read_file(p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AssetCandles {
                asset,
                candles: merge_sources(sources),
            })
        })
        .collect()
}

/// Reads and validates one candle file.
///
/// # Errors
/// [`LoadError`] naming the file (and, for bad values, the field and row).
pub fn read_file(path: &Path) -> Result<Vec<Candle>, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    let mut lines = Vec::new();
    let (frame, kind) = if is_parquet {
        let frame = ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(|e| file_error(path, format!("not a readable Parquet file: {e}")))?;
        (frame, Layout::Parquet)
    } else {
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(bytes.len() * 4);
            flate2::read::MultiGzDecoder::new(bytes.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| file_error(path, format!("not a readable gzip file: {e}")))?;
            out
        } else {
            bytes
        };
        // A byte-order mark (a spreadsheet's "CSV UTF-8" export) read as part of the first
        // column's name: `missing column open_time`.
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
        let (text, kept) = without_blank_lines(text);
        lines = kept;
        read_csv(path, &text, &lines)?
    };
    let layout = Where { kind, lines: &lines };
    let candles = frame_to_candles(path, &frame, layout)?;
    if candles.is_empty() {
        return Err(file_error(path, "no candles (a header alone)"));
    }
    validate_candles(&candles).map_err(|candle| LoadError::Candle {
        path: path.to_owned(),
        place: layout.place(candle.row),
        candle,
    })?;
    Ok(candles)
}

/// How a candle file is laid out: where its rows are, and whether its open times may be
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// SPEC's CSV columns under a header line.
    Csv,
    /// A Binance dump: CSV without a header (open times in ms or, since 2025, µs).
    Binance,
    /// Parquet with SPEC's columns.
    Parquet,
}

/// A file's [`Layout`] and, for CSV, the file line (1-based) of each line the parser read.
#[derive(Debug, Clone, Copy)]
struct Where<'a> {
    kind: Layout,
    lines: &'a [usize],
}

impl Where<'_> {
    /// Data row `row` (0-based) as an editor finds it: a CSV file's line (1-based, the header
    /// and blank lines counted), a Parquet file's row.
    fn place(self, row: usize) -> String {
        let line = |read: usize| self.lines.get(read).copied().unwrap_or(read + 1);
        match self.kind {
            Layout::Csv => format!("line {}", line(row + 1)),
            Layout::Binance => format!("line {}", line(row)),
            Layout::Parquet => format!("row {row} (0-based)"),
        }
    }
}

/// The first data row (0-based) with a value in one of SPEC's columns (`positions`) that is not
/// a number (`open_time` an integer): the row, the column and the value (cut to 40 characters).
fn first_unreadable<'a>(
    text: &[u8],
    header: bool,
    positions: &[(usize, &'a str)],
) -> Option<(usize, &'a str, String)> {
    let text = String::from_utf8_lossy(text);
    let rows = text.lines().skip(usize::from(header));
    rows.enumerate().find_map(|(row, line)| {
        let fields = csv_fields(line.trim_end_matches('\r'));
        positions.iter().find_map(|&(i, name)| {
            let value = fields.get(i)?.as_str();
            let number = if name == "open_time" {
                value.parse::<i64>().is_ok()
            } else {
                value.parse::<f64>().is_ok()
            };
            (!value.is_empty() && !number).then(|| (row, name, value.chars().take(40).collect()))
        })
    })
}

/// A CSV line's fields as the CSV parser reads them: split on commas outside double quotes,
/// each trimmed and unquoted (`""` inside quotes is one quote). A spreadsheet's export quotes
/// every value, and a quoted value may hold a comma (`"110,5"`, a note).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            // A quote opens a quoted field only at its start (spaces aside), as the parser
            // reads it; elsewhere it is part of the value (`size 5"`).
            '"' if quoted => quoted = false,
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            ',' if !quoted => fields.push(std::mem::take(&mut field).trim().to_owned()),
            c => field.push(c),
        }
    }
    fields.push(field.trim().to_owned());
    fields
}

/// `text` without its blank lines (a trailing one most often: read as a row of empty fields, it
/// refused the whole file), and the file line (1-based) of each line kept.
fn without_blank_lines(text: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut kept = Vec::with_capacity(text.len());
    let mut lines = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        kept.extend_from_slice(line);
        kept.push(b'\n');
        lines.push(i + 1);
    }
    (kept, lines)
}

/// Parses CSV text (without blank lines; `lines` are the file lines of its lines) into a frame
/// with SPEC's column names, and says which CSV layout it was.
fn read_csv(path: &Path, text: &[u8], lines: &[usize]) -> Result<(DataFrame, Layout), LoadError> {
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_field = first_line.split(|&b| b == b',').next().unwrap_or_default();
    let headerless = std::str::from_utf8(first_field)
        .ok()
        .is_some_and(|f| f.trim().parse::<i64>().is_ok());
    let fields = first_line.split(|&b| b == b',').count();
    if first_line.iter().all(u8::is_ascii_whitespace) {
        return Err(file_error(path, "empty file"));
    }
    let mut schema = Schema::default();
    // Where each of SPEC's columns is, to name a value the parser cannot read.
    let mut positions: Vec<(usize, &str)> = BINANCE_POSITIONS.iter().copied().zip(COLUMNS).collect();
    // The header as the reader is given it where it differs from the file's: the names trimmed
    // and unquoted, so ` open` or `"open"` is found by the name it was checked by (a name with a
    // comma or quote re-quoted). A plain header is read as it is, without copying the text.
    let mut rebuilt = Vec::new();
    let options = if headerless {
        if fields < 8 {
            return Err(file_error(
                path,
                format!(
                    "no header and {fields} columns: expected a header naming {} or a 12-column Binance kline dump",
                    COLUMNS.join(", ")
                ),
            ));
        }
        for i in 0..fields {
            let dtype = match i {
                0 => DataType::Int64,
                i if BINANCE_POSITIONS.contains(&i) => DataType::Float64,
                _ => DataType::String,
            };
            schema.with_column(format!("column_{}", i + 1).into(), dtype);
        }
        CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(Arc::new(schema)))
            .with_projection(Some(Arc::new(BINANCE_POSITIONS.to_vec())))
    } else {
        let header = String::from_utf8_lossy(first_line);
        // Names may be quoted (`"open_time","open",...`), as the CSV parser reads them.
        let names = csv_fields(header.trim_end_matches('\r'));
        if let Some(missing) = COLUMNS.iter().find(|c| !names.iter().any(|n| n == *c)) {
            return Err(file_error(
                path,
                format!(
                    "missing column `{missing}`: the header must name {} (extra columns are ignored)",
                    COLUMNS.join(", ")
                ),
            ));
        }
        positions = COLUMNS
            .iter()
            .filter_map(|&c| names.iter().position(|n| *n == c).map(|i| (i, c)))
            .collect();
        let quoted: Vec<String> = names
            .iter()
            .map(|n| {
                if n.contains([',', '"']) {
                    format!("\"{}\"", n.replace('"', "\"\""))
                } else {
                    n.clone()
                }
            })
            .collect();
        let header_line = quoted.join(",");
        if header_line != header.trim_end_matches('\r') {
            rebuilt.extend_from_slice(header_line.as_bytes());
            rebuilt.push(b'\n');
            rebuilt.extend_from_slice(text.get(first_line.len() + 1..).unwrap_or_default());
        }
        for name in COLUMNS {
            let dtype = if name == "open_time" {
                DataType::Int64
            } else {
                DataType::Float64
            };
            schema.with_column(name.into(), dtype);
        }
        CsvReadOptions::default()
            .with_has_header(true)
            .with_schema_overwrite(Some(Arc::new(schema)))
            .with_columns(Some(COLUMNS.iter().map(|&c| c.into()).collect()))
    };
    let frame = options
        .with_n_threads(Some(1))
        .into_reader_with_file_handle(Cursor::new(if rebuilt.is_empty() { text } else { &rebuilt }))
        .finish()
        .map_err(|e| {
            let at = Where {
                kind: if headerless { Layout::Binance } else { Layout::Csv },
                lines,
            };
            match first_unreadable(text, !headerless, &positions) {
                Some((row, name, value)) => file_error(
                    path,
                    format!(
                        "{}: {name} `{value}` is not {}",
                        at.place(row),
                        if name == "open_time" {
                            "a whole number (Unix ms)"
                        } else {
                            "a number"
                        }
                    ),
                ),
                None => file_error(path, format!("cannot parse CSV: {e}")),
            }
        })?;
    let frame = if headerless {
        let mut frame = frame;
        frame
            .set_column_names(&COLUMNS)
            .map_err(|e| file_error(path, e.to_string()))?;
        frame
    } else {
        frame
    };
    Ok((frame, if headerless { Layout::Binance } else { Layout::Csv }))
}

fn column_f64(
    path: &Path,
    frame: &DataFrame,
    name: &'static str,
    layout: Where<'_>,
) -> Result<Vec<f64>, LoadError> {
    let column = frame
        .column(name)
        .map_err(|_| file_error(path, format!("missing column `{name}`")))?;
    let cast = column
        .cast(&DataType::Float64)
        .map_err(|e| file_error(path, format!("column `{name}` is not numeric: {e}")))?;
    let values = cast.f64().map_err(|e| file_error(path, e.to_string()))?;
    values
        .iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| file_error(path, format!("{}: {name} is empty", layout.place(row)))))
        .collect()
}

fn frame_to_candles(path: &Path, frame: &DataFrame, layout: Where<'_>) -> Result<Vec<Candle>, LoadError> {
    let micro_ok = layout.kind == Layout::Binance;
    let open_time = frame
        .column("open_time")
        .map_err(|_| file_error(path, "missing column `open_time`"))?
        .cast(&DataType::Int64)
        .map_err(|e| file_error(path, format!("column `open_time` is not an integer: {e}")))?;
    let open_time = open_time.i64().map_err(|e| file_error(path, e.to_string()))?;
    let [open, high, low, close, volume, quote_volume] = [
        column_f64(path, frame, "open", layout)?,
        column_f64(path, frame, "high", layout)?,
        column_f64(path, frame, "low", layout)?,
        column_f64(path, frame, "close", layout)?,
        column_f64(path, frame, "volume", layout)?,
        column_f64(path, frame, "quote_volume", layout)?,
    ];
    open_time
        .iter()
        .enumerate()
        .map(|(row, t)| {
            let t =
                t.ok_or_else(|| file_error(path, format!("{}: open_time is empty", layout.place(row))))?;
            // Only a Binance dump's open times may be microseconds (converted below); anywhere
            // else such a value is a unit slip that would place the candle 1,000 times later.
            if !micro_ok && t > MICROSECOND_THRESHOLD {
                return Err(file_error(
                    path,
                    format!(
                        "{}: open_time {t} is after the year 5000 in milliseconds (microseconds?): \
                         this layout holds Unix ms",
                        layout.place(row)
                    ),
                ));
            }
            // A microsecond time between two milliseconds is no hour's start: refused, not
            // truncated onto one.
            if micro_ok && t > MICROSECOND_THRESHOLD && t % 1000 != 0 {
                return Err(file_error(
                    path,
                    format!(
                        "{}: open_time {t} (microseconds) is not on the hour",
                        layout.place(row)
                    ),
                ));
            }
            Ok(Candle {
                open_time: if micro_ok && t > MICROSECOND_THRESHOLD {
                    t / 1000
                } else {
                    t
                },
                open: open[row],
                high: high[row],
                low: low[row],
                close: close[row],
                volume: volume[row],
                quote_volume: quote_volume[row],
            })
        })
        .collect()
}

/// Writes candles as a SPEC CSV file (header, one row per candle), gzip-compressed when the
/// path ends in `.gz`.
///
/// # Errors
/// Any I/O error.
pub fn write_csv(path: &Path, candles: &[Candle]) -> std::io::Result<()> {
    let mut text = String::from("open_time,open,high,low,close,volume,quote_volume\n");
    for c in candles {
        text.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            c.open_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume
        ));
    }
    let file = std::fs::File::create(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        gz.write_all(text.as_bytes())?;
        gz.finish()?.sync_all()
    } else {
        use std::io::Write as _;
        let mut file = file;
        file.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use volcast_core::candles::CandleProblem;

    const HEADER: &str = "open_time,open,high,low,close,volume,quote_volume\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_spec_csv_gzip_and_binance_dumps_alike() {
        const T0: i64 = 472_222 * 3_600_000; // 2023-11-14 21:00 UTC
        const T1: i64 = T0 + 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{T0},1,2,0.5,1.5,10,15\n{T1},1.5,2,1,1.2,5,6\n");
        let plain = write(dir.path(), "A.csv", &format!("{HEADER}{body}"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let shuffled = format!(
            "open_time,trades,open,high,low,close,volume,quote_volume\n{T0},7,1,2,0.5,1.5,10,15\n{T1},8,1.5,2,1,1.2,5,6\n"
        );
        gz.write_all(shuffled.as_bytes()).unwrap();
        let gzipped = dir.path().join("B.csv.gz");
        std::fs::write(&gzipped, gz.finish().unwrap()).unwrap();
        let kline = |t0: i64, t1: i64| {
            format!(
                "{t0},1,2,0.5,1.5,10,{},15,3,1,1,0\n{t1},1.5,2,1,1.2,5,{},6,3,1,1,0\n",
                t0 + 1,
                t1 + 1
            )
        };
        // A spreadsheet's export: a byte-order mark, quoted names and values, CRLF line ends.
        let exported = write(
            dir.path(),
            "F.csv",
            &format!(
                "\u{feff}\"open_time\",\"open\",\"high\",\"low\",\"close\",\"volume\",\"quote_volume\"\r\n\
                 \"{T0}\",\"1\",\"2\",\"0.5\",\"1.5\",\"10\",\"15\"\r\n{T1},1.5,2,1,1.2,5,6\r\n"
            ),
        );
        let binance_ms = write(dir.path(), "C.csv", &kline(T0, T1));
        let binance_us = write(dir.path(), "D.csv", &kline(T0 * 1000, T1 * 1000));
        let a = read_file(&plain).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!((a[1].open_time, a[1].close, a[1].quote_volume), (T1, 1.2, 6.0));
        assert_eq!(read_file(&gzipped).unwrap(), a);
        assert_eq!(read_file(&exported).unwrap(), a);
        assert_eq!(read_file(&binance_ms).unwrap(), a);
        // Microsecond open times (Binance spot dumps since 2025) become milliseconds.
        assert_eq!(read_file(&binance_us).unwrap(), a);
        // One between two milliseconds is refused, not truncated onto the hour.
        let off_us = write(dir.path(), "G.csv", &kline(T0 * 1000 + 500, T1 * 1000));
        let e = read_file(&off_us).unwrap_err().to_string();
        assert!(e.contains("G.csv") && e.contains("not on the hour"), "{e}");
        // In SPEC's layout (Unix ms) they are a unit slip, refused naming the row.
        let spec_us = write(
            dir.path(),
            "E.csv",
            &format!("{HEADER}{},1,2,0.5,1.5,10,15\n", T0 * 1000),
        );
        let e = read_file(&spec_us).unwrap_err().to_string();
        assert!(
            e.contains("E.csv") && e.contains("line 2:") && e.contains("microseconds"),
            "{e}"
        );
    }

    #[test]
    fn bad_rows_name_file_field_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "X.csv",
            &format!("{HEADER}0,1,2,0.5,1.5,10,15\n3600000,1.5,0.9,1,1.2,5,6\n"),
        );
        match read_file(&path).unwrap_err() {
            LoadError::Candle {
                path: p,
                place,
                candle: source,
            } => {
                assert_eq!(p, path);
                assert_eq!(place, "line 3", "the header and the first candle above it");
                assert_eq!(
                    (source.row, source.field, source.problem),
                    (1, "high", CandleProblem::HighBelowLow)
                );
            }
            other => panic!("unexpected {other}"),
        }
        let path = write(
            dir.path(),
            "Y.csv",
            &format!("{HEADER}0,1,2,0.5,1.5,10,15\n0,1.5,2,1,1.2,5,6\n"),
        );
        let e = read_file(&path).unwrap_err();
        assert!(
            matches!(&e, LoadError::Candle { candle, .. } if candle.problem == CandleProblem::Duplicate),
            "{e}"
        );
        // Blank lines hold no candle: skipped, and counted in the lines named.
        let path = write(
            dir.path(),
            "B.csv",
            &format!("{HEADER}0,1,2,0.5,1.5,10,15\n\n  \r\n3600000,1.5,0.9,1,1.2,5,6\n\n"),
        );
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("B.csv, line 5: row 1"), "{e}");
        let path = write(
            dir.path(),
            "T.csv",
            &format!("{HEADER}0,1,2,0.5,1.5,10,15\n3600000,1.5,2,1,1.2,5,6\n\n\n"),
        );
        assert_eq!(read_file(&path).unwrap().len(), 2);
        // A value the parser cannot read: named by line and column (polars' message gave a byte
        // offset on another line and advice for Python).
        let path = write(
            dir.path(),
            "N.csv",
            &format!("{HEADER}0,1,2,0.5,1.5,10,15\n\n3600000,1.5,2,1,abc,5,6\n"),
        );
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("N.csv: line 4: close `abc` is not a number"), "{e}");
        // A spreadsheet's export, every value quoted and a note holding a comma: the bad value
        // is named, not the first quoted one (line 2's open time was).
        let path = write(
            dir.path(),
            "Q.csv",
            "\"note\",\"open_time\",\"open\",\"high\",\"low\",\"close\",\"volume\",\"quote_volume\"\n\
             \"a, b\",\"0\",\"1\",\"2\",\"0.5\",\"1.5\",\"10\",\"15\"\n\
             \"c\",\"3600000\",\"110,5\",\"2\",\"1\",\"1.2\",\"5\",\"6\"\n",
        );
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("Q.csv: line 3: open `110,5` is not a number"), "{e}");
        // An open time with a fraction: not a whole number, rather than not a number.
        let path = write(
            dir.path(),
            "R.csv",
            &format!("{HEADER}3600000.0,1,2,0.5,1.5,10,15\n"),
        );
        let e = read_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 2: open_time `3600000.0` is not a whole number"),
            "{e}"
        );
        // Spaces around the header's names, as around its values.
        let path = write(
            dir.path(),
            "S.csv",
            "open_time, open, high, low, close, volume, quote_volume\n0, 1, 2, 0.5, 1.5, 10, 15\n",
        );
        assert_eq!(read_file(&path).unwrap().len(), 1);
        let path = write(dir.path(), "Z.csv", &format!("{HEADER}0,1,2,0.5,1.5,,15\n"));
        let e = read_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("Z.csv") && e.contains("line 2:") && e.contains("volume"),
            "{e}"
        );
        let path = write(dir.path(), "W.csv", "time,price\n0,1\n");
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("missing column `open_time`"), "{e}");
        let path = write(dir.path(), "V.csv", HEADER);
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("V.csv") && e.contains("no candles"), "{e}");
    }

    #[test]
    fn joins_directories_first_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write(
            a.path(),
            "BTC.csv",
            &format!("{HEADER}3600000,1,2,0.5,1.5,10,15\n"),
        );
        write(
            b.path(),
            "BTC.csv",
            &format!("{HEADER}0,1,1,1,1,1,1\n3600000,9,9,9,9,9,9\n7200000,1,1,1,1,1,1\n"),
        );
        write(b.path(), "ETH.csv", &format!("{HEADER}0,1,1,1,1,1,1\n"));
        write(b.path(), "notes.txt", "ignored");
        let assets = load_dirs(&[a.path().to_owned(), b.path().to_owned()]).unwrap();
        assert_eq!(
            assets.iter().map(|a| a.asset.as_str()).collect::<Vec<_>>(),
            ["BTC", "ETH"]
        );
        let btc = &assets[0].candles;
        assert_eq!(btc.len(), 3);
        assert_eq!(btc[1].close, 1.5);
        write(b.path(), "ETH.parquet", "x");
        assert!(matches!(
            load_dirs(&[b.path().to_owned()]),
            Err(LoadError::Ambiguous { .. })
        ));
        assert!(matches!(
            load_dirs(&[b.path().join("nope")]),
            Err(LoadError::Directory { .. })
        ));
        // An empty id (`--assets ""`, `BTC,`) is said as such: it read "asset  has no candle file".
        let e = load_assets(&[a.path().to_owned()], Some(&[String::new()]))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "an empty asset id was asked for (a stray comma in the list?)"
        );
    }

    /// An entry named as a candle file that cannot be read as one is refused, naming it: it was
    /// skipped, and its asset dropped out of training or evaluation unseen. Other names (notes,
    /// hidden files) are still passed over.
    #[test]
    fn an_entry_named_as_candles_but_unreadable_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let refused = |make: &dyn Fn(&Path)| {
            let d = tempfile::tempdir().unwrap();
            write(d.path(), "BTC.csv", &format!("{HEADER}0,1,1,1,1,1,1\n"));
            write(d.path(), "notes.txt", "ignored");
            write(d.path(), ".hidden.csv", "ignored");
            std::fs::create_dir(d.path().join("sub")).unwrap();
            assert_eq!(list_dir(d.path()).unwrap().len(), 1);
            make(d.path());
            list_dir(d.path())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let said = refused(&|d| std::fs::create_dir(d.join("ETH.csv.gz")).unwrap());
        assert!(
            said.contains("ETH.csv.gz") && said.contains("a directory named as a candle file"),
            "{said}"
        );
        let said = refused(&|d| std::os::unix::fs::symlink(d.join("gone"), d.join("DEAD.csv.gz")).unwrap());
        assert!(
            said.contains("DEAD.csv.gz") && said.contains("a broken link?"),
            "{said}"
        );
        let said = refused(&|d| {
            let name = std::ffi::OsStr::from_bytes(b"ETH\xffUSDT.csv.gz");
            std::fs::write(d.join(name), "x").unwrap();
        });
        assert!(said.contains("not valid UTF-8"), "{said}");
        let said = refused(&|d| {
            write(d, "ETH.CSV", &format!("{HEADER}0,1,1,1,1,1,1\n"));
        });
        assert!(
            said.contains("ETH.CSV") && said.contains("extension in capitals"),
            "{said}"
        );
    }

    /// Asset ids that differ only in case are one market counted twice: refused, within a
    /// directory and across two, naming both files.
    #[test]
    fn asset_ids_that_differ_only_in_case_are_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let row = format!("{HEADER}0,1,1,1,1,1,1\n");
        write(a.path(), "BTC.csv", &row);
        write(b.path(), "btc.csv", &row);
        for dirs in [
            vec![a.path().to_owned(), b.path().to_owned()],
            vec![b.path().to_owned(), a.path().to_owned()],
        ] {
            let said = load_dirs(&dirs).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                said.contains("BTC.csv") && said.contains("btc.csv ") && said.contains("differ only in case"),
                "{said}"
            );
        }
        write(a.path(), "btc.csv", &row);
        let said = load_dirs(&[a.path().to_owned()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(said.contains("differ only in case"), "{said}");
        // The same id in two directories is one asset, as before.
        let c = tempfile::tempdir().unwrap();
        write(c.path(), "BTC.csv", &row);
        std::fs::remove_file(a.path().join("btc.csv")).unwrap();
        assert_eq!(
            load_dirs(&[a.path().to_owned(), c.path().to_owned()])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = df!(
            "open_time" => [0i64, 3_600_000],
            "open" => [1.0, 1.5], "high" => [2.0, 2.0], "low" => [0.5, 1.0], "close" => [1.5, 1.2],
            "volume" => [10.0, 5.0], "quote_volume" => [15.0, 6.0]
        )
        .unwrap();
        let path = dir.path().join("P.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        let c = read_file(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].quote_volume, 15.0);
    }
}
