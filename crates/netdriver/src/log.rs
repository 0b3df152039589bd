//! The process-wide debug log: `tracing` events from the core and the driver, filtered by
//! Steam's detail levels (`ESteamNetworkingSocketsDebugOutputType`), rate-limited, and
//! handed to one output function for every endpoint, as Steam's `SetDebugOutputFunction`.
//!
//! Off by default. While off, the global `tracing` level filter is `OFF`, so an event
//! macro on the hot path costs one relaxed atomic load and a compare: no formatting, no
//! callsite registration, no lock. Turning it on installs (once) a `tracing-subscriber`
//! registry with [`OutputLayer`] as the process's global subscriber, and rebuilds the
//! callsite interest cache whenever the detail level changes.
//!
//! Each callsite may emit a burst of [`BURST`] lines, then [`PER_SECOND`] a second; every
//! line also draws from a process-wide budget ([`GLOBAL_BURST`], [`GLOBAL_PER_SECOND`]), so
//! a flood (a thousand peers failing at once, a hostile source) cannot flood the
//! application. Suppressed lines are counted and the count is appended to the next line
//! that gets through from the same callsite.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::Registry;

/// Lines one callsite may emit at once.
pub const BURST: f64 = 50.0;
/// Lines one callsite may emit a second, after its burst.
pub const PER_SECOND: f64 = 20.0;
/// Lines the whole process may emit at once.
pub const GLOBAL_BURST: f64 = 500.0;
/// Lines the whole process may emit a second, after its burst.
pub const GLOBAL_PER_SECOND: f64 = 200.0;
/// Most callsites (and application keys) with a bucket of their own; past it, new ones
/// share one bucket, so the table stays bounded whatever keys the application passes.
const MAX_BUCKETS: usize = 1024;

/// Steam's `ESteamNetworkingSocketsDebugOutputType`: detail levels, lower is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum DebugLevel {
    /// Nothing.
    None = 0,
    /// The API was used incorrectly, or an internal error happened.
    Bug = 1,
    /// A run-time error that is not a bug (a port that cannot be bound, a peer that fails).
    Error = 2,
    /// Nothing is wrong, but this is worth knowing.
    Important = 3,
    /// Something unusual that may explain a problem (a stalled session, a refused peer).
    Warning = 4,
    /// The recommended amount: sessions opening and closing, and why.
    Msg = 5,
    /// Quite a bit: dropped and refused datagrams, with their reasons.
    Verbose = 6,
    /// Practically everything.
    Debug = 7,
    /// Everything there is.
    Everything = 8,
}

/// Every level with Steam's name (without its prefix) and what it means, for the TS
/// generator.
pub const LEVELS: &[(DebugLevel, &str, &str)] = &[
    (DebugLevel::None, "None", "Nothing."),
    (
        DebugLevel::Bug,
        "Bug",
        "The API was used incorrectly, or an internal error happened.",
    ),
    (
        DebugLevel::Error,
        "Error",
        "A run-time error that is not a bug (a port that cannot be bound, a peer that fails).",
    ),
    (
        DebugLevel::Important,
        "Important",
        "Nothing is wrong, but this is worth knowing.",
    ),
    (
        DebugLevel::Warning,
        "Warning",
        "Something unusual that may explain a problem (a stalled session, a refused peer).",
    ),
    (
        DebugLevel::Msg,
        "Msg",
        "The recommended amount: sessions opening and closing, and why.",
    ),
    (
        DebugLevel::Verbose,
        "Verbose",
        "Quite a bit: dropped and refused datagrams, with their reasons.",
    ),
    (DebugLevel::Debug, "Debug", "Practically everything."),
    (DebugLevel::Everything, "Everything", "Everything there is."),
];

impl DebugLevel {
    /// The level with Steam's value `v` (values above 8 mean everything).
    pub fn from_value(v: u32) -> DebugLevel {
        match v {
            0 => DebugLevel::None,
            1 => DebugLevel::Bug,
            2 => DebugLevel::Error,
            3 => DebugLevel::Important,
            4 => DebugLevel::Warning,
            5 => DebugLevel::Msg,
            6 => DebugLevel::Verbose,
            7 => DebugLevel::Debug,
            _ => DebugLevel::Everything,
        }
    }

    /// The level a `tracing` event is reported at.
    pub fn of(level: &Level) -> DebugLevel {
        match *level {
            Level::ERROR => DebugLevel::Error,
            Level::WARN => DebugLevel::Warning,
            Level::INFO => DebugLevel::Msg,
            Level::DEBUG => DebugLevel::Verbose,
            Level::TRACE => DebugLevel::Debug,
        }
    }

    /// The most detailed `tracing` level a detail level lets through.
    fn tracing_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            DebugLevel::None => LevelFilter::OFF,
            DebugLevel::Bug | DebugLevel::Error | DebugLevel::Important => LevelFilter::ERROR,
            DebugLevel::Warning => LevelFilter::WARN,
            DebugLevel::Msg => LevelFilter::INFO,
            DebugLevel::Verbose => LevelFilter::DEBUG,
            DebugLevel::Debug | DebugLevel::Everything => LevelFilter::TRACE,
        }
    }
}

/// Where lines go: called with the line's level and text, from any thread (the driver's or
/// the application's), never while protocol state is locked.
pub type Output = Arc<dyn Fn(DebugLevel, &str) + Send + Sync>;

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
            suppressed: 0,
        }
    }

    fn take(&mut self, now: Instant, burst: f64, rate: f64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The rate limiter: one bucket per key (a callsite, or an application key), one for all.
struct Limiter {
    buckets: HashMap<u64, Bucket>,
    global: Bucket,
}

impl Limiter {
    fn new() -> Self {
        Limiter {
            buckets: HashMap::new(),
            global: Bucket::full(GLOBAL_BURST, Instant::now()),
        }
    }

    /// Whether a line under `key` may go out now; if so, how many like it were suppressed
    /// since the last one that did.
    fn admit(&mut self, key: u64, now: Instant) -> Option<u64> {
        let key = if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            0
        } else {
            key
        };
        let bucket = self
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(BURST, now));
        if !bucket.take(now, BURST, PER_SECOND)
            || !self.global.take(now, GLOBAL_BURST, GLOBAL_PER_SECOND)
        {
            bucket.suppressed += 1;
            return None;
        }
        Some(std::mem::take(&mut bucket.suppressed))
    }
}

/// The configured level and output.
struct Config {
    level: AtomicU8,
    output: RwLock<Option<Output>>,
    limiter: Mutex<Limiter>,
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config {
        level: AtomicU8::new(DebugLevel::None as u8),
        output: RwLock::new(None),
        limiter: Mutex::new(Limiter::new()),
    })
}

fn current_level() -> DebugLevel {
    DebugLevel::from_value(u32::from(config().level.load(Ordering::Relaxed)))
}

/// Sets the process-wide detail level and output function (`None`, or level `None`: off).
/// Returns false if another global `tracing` subscriber was installed first (then only
/// lines from [`log_line`] reach the output).
pub fn set_debug_output(level: DebugLevel, output: Option<Output>) -> bool {
    let cfg = config();
    let level = if output.is_none() {
        DebugLevel::None
    } else {
        level
    };
    *cfg.output.write() = output;
    cfg.level.store(level as u8, Ordering::Relaxed);
    let installed = install();
    // The global max level (what every event macro checks first) follows the new level.
    tracing_core::callsite::rebuild_interest_cache();
    installed
}

/// The detail level in force.
pub fn debug_level() -> DebugLevel {
    current_level()
}

/// Installs the subscriber once; true if ours is the global one.
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let subscriber = Registry::default().with(OutputLayer);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    })
}

/// A line from the application (the TS layer's own reasons: a refused argument, say),
/// under the same level, rate limit and output as the core's. `key` groups lines for the
/// rate limit (one bucket per distinct key, bounded).
pub fn log_line(level: DebugLevel, key: &str, text: &str) {
    if level == DebugLevel::None || level > current_level() {
        return;
    }
    // Keys of application lines are odd, so they never collide with a callsite's (even).
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    emit(level, hash, text.to_owned());
}

fn emit(level: DebugLevel, key: u64, line: String) {
    if let Some(suppressed) = admit(key) {
        deliver(level, line, suppressed);
    }
}

/// Whether a line under `key` may go out now (and how many like it were held back).
fn admit(key: u64) -> Option<u64> {
    config().limiter.lock().admit(key, Instant::now())
}

fn deliver(level: DebugLevel, mut line: String, suppressed: u64) {
    let cfg = config();
    if suppressed > 0 {
        let _ = write!(line, " ({suppressed} more like this suppressed)");
    }
    let output = cfg.output.read().clone();
    if let Some(out) = output {
        out(level, &line);
    }
}

/// The layer that turns `tracing` events into lines for the output.
pub struct OutputLayer;

impl<S: Subscriber> Layer<S> for OutputLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        DebugLevel::of(metadata.level()) <= current_level()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(current_level().tracing_filter())
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = DebugLevel::of(meta.level());
        if level > current_level() {
            return;
        }
        // The callsite is the line's identity for the rate limit (even keys; the
        // application's are odd). A line held back is never formatted.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        meta.callsite().hash(&mut h);
        let Some(suppressed) = admit(h.finish() & !1) else {
            return;
        };
        let mut text = Line::default();
        event.record(&mut text);
        let mut line = text.message;
        if !text.fields.is_empty() {
            let _ = write!(line, " ({})", text.fields);
        }
        deliver(level, line, suppressed);
    }
}

/// An event's message and its other fields, `name=value` separated by commas.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.sep();
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.sep();
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}

impl Line {
    fn sep(&mut self) {
        if !self.fields.is_empty() {
            self.fields.push_str(", ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn levels_map_both_ways() {
        for &(level, _, _) in LEVELS {
            assert_eq!(DebugLevel::from_value(level as u32), level);
        }
        assert_eq!(DebugLevel::from_value(99), DebugLevel::Everything);
        assert_eq!(DebugLevel::of(&Level::WARN), DebugLevel::Warning);
        assert!(DebugLevel::Verbose.tracing_filter() >= tracing::level_filters::LevelFilter::DEBUG);
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_counts_what_it_suppressed() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let admitted = (0..200).filter(|_| l.admit(8, t0).is_some()).count();
        assert_eq!(admitted, BURST as usize);
        // Another key still has its own burst (the global budget is larger).
        assert!(l.admit(16, t0).is_some());
        // A second later, PER_SECOND more; the first reports what was held back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.admit(8, t1), Some(200 - BURST as u64));
        let more = (0..100).filter(|_| l.admit(8, t1).is_some()).count();
        assert_eq!(more, PER_SECOND as usize - 1);
    }

    #[test]
    fn the_global_budget_bounds_many_keys() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let admitted = (0..5000u64)
            .filter(|k| l.admit(k * 8, t0).is_some())
            .count();
        assert_eq!(admitted, GLOBAL_BURST as usize);
        assert!(l.buckets.len() <= MAX_BUCKETS + 1);
    }

    #[test]
    fn lines_reach_the_output_at_their_level_only() {
        let got: Arc<Mutex<Vec<(DebugLevel, String)>>> = Arc::default();
        let sink = Arc::clone(&got);
        assert!(set_debug_output(
            DebugLevel::Msg,
            Some(Arc::new(move |l, s: &str| sink
                .lock()
                .push((l, s.to_owned()))))
        ));
        // While on, the global filter every event macro checks first lets Msg (INFO) through.
        assert_eq!(
            tracing::level_filters::LevelFilter::current(),
            tracing::level_filters::LevelFilter::INFO
        );
        tracing::info!(peer = "ip:1.2.3.4:5", "session connected");
        tracing::debug!("too detailed");
        log_line(DebugLevel::Warning, "app", "from the app");
        log_line(DebugLevel::Verbose, "app", "too detailed too");
        set_debug_output(DebugLevel::None, None);
        // Off: the global filter is OFF, so an event macro stops at one atomic load.
        assert_eq!(
            tracing::level_filters::LevelFilter::current(),
            tracing::level_filters::LevelFilter::OFF
        );
        tracing::error!("after off");
        // Other tests in this process may log meanwhile: look at this test's lines only.
        let got: Vec<_> = got
            .lock()
            .iter()
            .filter(|(_, s)| {
                s.contains("connected")
                    || s.contains("app")
                    || s.contains("detailed")
                    || s.contains("after off")
            })
            .cloned()
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    DebugLevel::Msg,
                    "session connected (peer=ip:1.2.3.4:5)".to_owned()
                ),
                (DebugLevel::Warning, "from the app".to_owned()),
            ]
        );
    }
}
