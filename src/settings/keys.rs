//! Unknown keys are errors: a misspelt setting would otherwise be ignored
//! without a word and the default silently used.
//!
//! The valid keys are those of the compiled-in `config/base.toml`, which
//! sets every one (a unit test holds it to that).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use config::{File, FileFormat, Map, Source, Value, ValueKind};

use super::{BASE, SettingsError};

/// Environment variables `HERALD__SECTION__KEY` set `section.key`.
pub const ENV_PREFIX: &str = "HERALD__";

/// Every dotted key a setting has (`server.retry_ms`, ...).
pub fn known() -> Result<BTreeSet<String>, SettingsError> {
    let mut keys = BTreeSet::new();
    flatten(
        "",
        &File::from_str(BASE, FileFormat::Toml).collect()?,
        &mut keys,
    );
    Ok(keys)
}

/// Refuses a key in the config file `path` (if it exists) that no setting has.
pub fn check_file(path: &Path, known: &BTreeSet<String>) -> Result<(), SettingsError> {
    if !path.exists() {
        return Ok(());
    }
    let mut keys = BTreeSet::new();
    flatten("", &File::from(path).collect()?, &mut keys);
    match keys.iter().find(|key| !known.contains(*key)) {
        Some(key) => Err(SettingsError(format!(
            "unknown setting {key} in {}: {}",
            path.display(),
            suggestion(key, known)
        ))),
        None => Ok(()),
    }
}

/// Refuses a `HERALD__…` variable that names no setting. The plain
/// variables of the contract (`HERALD_LISTEN`, ...) have one underscore
/// and are not affected.
pub fn check_environment(
    vars: &HashMap<String, String>,
    known: &BTreeSet<String>,
) -> Result<(), SettingsError> {
    let mut names: Vec<&String> = vars.keys().filter(|n| n.starts_with(ENV_PREFIX)).collect();
    names.sort();
    for name in names {
        let key = name[ENV_PREFIX.len()..].to_lowercase().replace("__", ".");
        if !known.contains(&key) {
            return Err(SettingsError(format!(
                "unknown setting {key} in the environment variable {name}: {}",
                suggestion(&key, known)
            )));
        }
    }
    Ok(())
}

/// "did you mean <the most similar valid key>?"
fn suggestion(key: &str, known: &BTreeSet<String>) -> String {
    let nearest = known
        .iter()
        .max_by(|a, b| {
            strsim::jaro_winkler(key, a)
                .total_cmp(&strsim::jaro_winkler(key, b))
                // Ties go to the alphabetically first key.
                .then_with(|| b.cmp(a))
        })
        .expect("there are settings");
    let variable = format!("{ENV_PREFIX}{}", nearest.to_uppercase().replace('.', "__"));
    format!("did you mean {nearest}? (environment variable {variable})")
}

/// Tables become dotted keys; anything else (arrays too) is one setting.
fn flatten(prefix: &str, table: &Map<String, Value>, out: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match &value.kind {
            ValueKind::Table(inner) => flatten(&key, inner, out),
            _ => {
                out.insert(key);
            }
        }
    }
}
