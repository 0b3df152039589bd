//! The core's tables of Steam's names and values, for the TS generator
//! (`scripts/gen-ts.cjs` writes `ts/generated.ts` from them), so the TS enums and the
//! `Config` type cannot drift from the Rust ones.

use napi_derive::napi;
use netcore::config::KEYS;
use netcore::eresult::{send_flags, EResult};
use netcore::identity::IdentityType;
use netcore::{ConnectionState, EndReason};

/// One named value of an enum.
#[napi(object)]
pub struct NamedValue {
    /// Steam's name (without its prefix).
    pub name: String,
    /// Steam's value.
    pub value: i32,
    /// What it means, where the core documents it.
    pub doc: Option<String>,
}

/// One configuration key.
#[napi(object)]
pub struct ConfigKey {
    /// The camelCase name.
    pub name: String,
    /// The default.
    pub default: f64,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// What it sets, with its unit.
    pub doc: String,
}

/// Every table the TS layer mirrors.
#[napi(object)]
pub struct Tables {
    /// `EResult`.
    pub e_result: Vec<NamedValue>,
    /// `k_nSteamNetworkingSend_*`.
    pub send_flags: Vec<NamedValue>,
    /// `ESteamNetworkingConnectionState`.
    pub connection_state: Vec<NamedValue>,
    /// `ESteamNetConnectionEnd`.
    pub connection_end: Vec<NamedValue>,
    /// `ESteamNetworkingIdentityType`.
    pub identity_type: Vec<NamedValue>,
    /// The configuration keys, in declaration order.
    pub config: Vec<ConfigKey>,
    /// `ESteamNetworkingSocketsDebugOutputType`.
    pub debug_output_type: Vec<NamedValue>,
}

fn named(rows: &[(&str, i32)]) -> Vec<NamedValue> {
    rows.iter()
        .map(|&(name, value)| NamedValue {
            name: name.to_owned(),
            value,
            doc: None,
        })
        .collect()
}

/// The core's tables.
#[napi]
pub fn tables() -> Tables {
    Tables {
        e_result: EResult::NAMED
            .iter()
            .map(|&(name, value, doc)| NamedValue {
                name: name.to_owned(),
                value,
                doc: Some(doc.to_owned()),
            })
            .collect(),
        send_flags: send_flags::NAMED
            .iter()
            .map(|&(name, value, doc)| NamedValue {
                name: name.to_owned(),
                value: value as i32,
                doc: Some(doc.to_owned()),
            })
            .collect(),
        connection_state: named(ConnectionState::NAMED),
        connection_end: named(EndReason::NAMED),
        identity_type: named(IdentityType::NAMED),
        config: KEYS
            .iter()
            .map(|k| ConfigKey {
                name: k.name.to_owned(),
                default: k.default as f64,
                min: k.min as f64,
                max: k.max as f64,
                doc: k.doc.trim().to_owned(),
            })
            .collect(),
        debug_output_type: netdriver::log::LEVELS
            .iter()
            .map(|&(level, name, doc)| NamedValue {
                name: name.to_owned(),
                value: level as i32,
                doc: Some(doc.to_owned()),
            })
            .collect(),
    }
}
