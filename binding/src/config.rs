//! Configuration values across the boundary: JS objects of numbers in, problems out.

use std::collections::HashMap;

use napi_derive::napi;
use netcore::config::{Config, ConfigError, KEYS};

/// A problem with configuration values; the TS layer turns it into a TypeError or RangeError.
#[napi(object)]
pub struct ConfigProblem {
    /// `"unknown"`, `"type"` or `"range"`.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The problem object for a refused change.
pub fn problem(e: ConfigError) -> ConfigProblem {
    let kind = match e {
        ConfigError::UnknownKey(_) => "unknown",
        ConfigError::NotInteger { .. } => "type",
        ConfigError::OutOfRange { .. } | ConfigError::Inconsistent(_) => "range",
    };
    ConfigProblem {
        kind: kind.into(),
        message: e.to_string(),
    }
}

/// A JS object's entries, as the core's change list.
pub fn entries(map: HashMap<String, f64>) -> Vec<(String, f64)> {
    map.into_iter().collect()
}

/// Checks configuration values against the defaults; `null` when they are all valid.
#[napi]
pub fn check_config(values: HashMap<String, f64>) -> Option<ConfigProblem> {
    Config::default().apply(&entries(values)).err().map(problem)
}

/// Every key's value in `c`, by JS name (a JS object: its key order is not meaningful).
pub fn config_map(c: &Config) -> HashMap<String, f64> {
    KEYS.iter()
        .filter_map(|k| c.get(k.name).map(|v| (k.name.to_owned(), v as f64)))
        .collect()
}
