//! Steam's `EResult` values, the outcome of API calls that can fail without an exception.

/// The subset of Steam's `EResult` the messages API returns (Steam's numeric values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EResult {
    /// Success.
    Ok = 1,
    /// Generic failure.
    Fail = 2,
    /// The session failed or was closed by the peer.
    NoConnection = 3,
    /// A bad argument.
    InvalidParam = 8,
    /// The endpoint is closed.
    InvalidState = 11,
    /// An operation timed out.
    Timeout = 16,
    /// A buffer or queue is full.
    LimitExceeded = 25,
    /// The request was already made.
    DuplicateRequest = 29,
    /// The connection could not be made.
    ConnectFailed = 35,
    /// The request was dropped on purpose (e.g. `NoDelay` when the message cannot go now).
    Ignored = 41,
}

impl EResult {
    /// Every value with its Steam name (for the generated TS enum).
    pub const NAMED: &'static [(&'static str, i32, &'static str)] = &[
        ("OK", 1, "Success."),
        ("Fail", 2, "Generic failure."),
        (
            "NoConnection",
            3,
            "The session or connection failed, was closed, or cannot be reached.",
        ),
        ("InvalidParam", 8, "A bad argument."),
        (
            "InvalidState",
            11,
            "The call does not fit the object's state (e.g. after close).",
        ),
        ("Timeout", 16, "An operation timed out."),
        ("LimitExceeded", 25, "A buffer or queue is full."),
        ("DuplicateRequest", 29, "The request was already made."),
        ("ConnectFailed", 35, "The connection could not be made."),
        (
            "Ignored",
            41,
            "The request was dropped on purpose (e.g. `NoDelay` when the message cannot go now).",
        ),
    ];
}

/// Steam's `k_nSteamNetworkingSend_*` flags.
pub mod send_flags {
    /// Unreliable, may wait for Nagle.
    pub const UNRELIABLE: u32 = 0;
    /// Do not wait for Nagle.
    pub const NO_NAGLE: u32 = 1;
    /// Drop rather than queue if the message cannot go out almost at once.
    pub const NO_DELAY: u32 = 4;
    /// Reliable, ordered per channel.
    pub const RELIABLE: u32 = 8;
    /// Transmit from the calling thread, not the driver's (also what `NO_NAGLE` and
    /// `NO_DELAY` do).
    pub const USE_CURRENT_THREAD: u32 = 16;
    /// Restart a failed session instead of returning `NoConnection`.
    pub const AUTO_RESTART_BROKEN_SESSION: u32 = 32;
    /// Every bit this library understands.
    pub const ALL: u32 =
        NO_NAGLE | NO_DELAY | RELIABLE | USE_CURRENT_THREAD | AUTO_RESTART_BROKEN_SESSION;

    /// Every flag and Steam's named combinations (for the generated TS enum).
    pub const NAMED: &[(&str, u32, &str)] = &[
        ("Unreliable", UNRELIABLE, "Unreliable: may be lost, reordered or duplicated, never corrupted; may wait for Nagle."),
        ("NoNagle", NO_NAGLE, "Send without waiting for Nagle (and flush what waits)."),
        ("UnreliableNoNagle", UNRELIABLE | NO_NAGLE, "Unreliable, without waiting for Nagle."),
        ("NoDelay", NO_DELAY, "Drop rather than queue if the message cannot go out almost at once."),
        ("UnreliableNoDelay", UNRELIABLE | NO_DELAY | NO_NAGLE, "Unreliable, now or never."),
        ("Reliable", RELIABLE, "Reliable: exactly once, in order per channel."),
        ("ReliableNoNagle", RELIABLE | NO_NAGLE, "Reliable, without waiting for Nagle."),
        ("UseCurrentThread", USE_CURRENT_THREAD, "Transmit from the calling thread before returning (NoNagle and NoDelay do too)."),
        ("AutoRestartBrokenSession", AUTO_RESTART_BROKEN_SESSION, "Restart a failed session instead of returning `NoConnection`."),
    ];
}
