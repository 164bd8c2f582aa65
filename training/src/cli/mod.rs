//! What every command-line binary shares: logging to stderr and the exit status.

mod design;
mod operation;

pub use design::{
    DesignFlags, HalfLife, NetworksApartArg, SkipFeatures, half_life_days, half_life_epochs, networks_apart,
    skip_features, skip_features_at,
};
pub use operation::{
    AdaptiveSteps, HorizonList, TermStructure, WindowDays, fit_end_of, refuse_in_sample,
    refuse_later_corrections, term_structure, with_term_structure,
};

/// Refuses, before any work, an output file (`flag PATH`) that cannot be written at the end: a
/// directory there, or a directory to write it in that does not exist. A run of minutes (an
/// evaluation, the walk-forward folds) failed only at its last step, "writing ...". Nothing is
/// created: an interrupted run leaves no empty file behind.
///
/// # Errors
/// Naming the flag, the path and what is wrong.
pub fn writable_output(flag: &str, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    if path.is_dir() {
        anyhow::bail!("{flag} {}: a directory; name a file", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "{flag} {}: no directory {} to write it in",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Writes a report to `path` whole or not at all: a regular file (or a new one) is replaced
/// through a temporary file beside it and a rename ([`volcast_model::artifact::replace_durably`]),
/// so a run killed or out of disk while writing leaves the previous report as it was, never a
/// cut-off one that a later tool would read (until stop 62 the file was truncated first). Any
/// other path is written through as it is: a symbolic link (the file it names is written, the
/// link kept; `/dev/stdout` is one, whatever stdout is), a pipe, a device.
///
/// # Errors
/// Naming the path and what failed.
pub fn write_report(path: &std::path::Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let special = std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file());
    if special {
        std::fs::write(path, contents)
    } else {
        volcast_model::artifact::replace_durably(path, contents.as_ref())
    }
    .with_context(|| format!("writing {}", path.display()))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a command with logging on: success exits 0; an error is printed with its causes and
/// exits 1.
pub fn main(run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The training config in the JSON file at `path` (as written beside every artifact), or the
/// default model's when there is none.
///
/// # Errors
/// When the file cannot be read or is not a training config.
pub fn training_config(
    path: Option<&std::path::Path>,
) -> anyhow::Result<volcast_model::config::TrainingConfig> {
    use anyhow::Context as _;
    let Some(path) = path else {
        return Ok(volcast_model::config::TrainingConfig::default_run());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    volcast_model::config::TrainingConfig::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a training config: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::write_report;

    /// A report replaces the one there whole, leaving no temporary file; a directory in its
    /// place is an error naming it; a path that is no regular file is written as it is.
    #[test]
    fn a_report_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "the previous report, longer than the new one").unwrap();
        write_report(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"], "no temporary file left");
        let err = write_report(dir.path(), "x").unwrap_err();
        assert!(
            format!("{err:#}").contains(&dir.path().display().to_string()),
            "{err:#}"
        );
        write_report(std::path::Path::new("/dev/null"), "discarded").unwrap();
        // Through a link: the file it names gets the report, the link stays a link.
        let target = dir.path().join("target.json");
        let link = dir.path().join("link.json");
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_report(&link, "through").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "through");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
}
