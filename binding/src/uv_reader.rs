//! Reading an endpoint's sockets on the JS thread: each socket is polled in Node's own event
//! loop (a libuv `uv_poll_t`), and when one is readable the JS thread runs the driver's
//! receive rounds itself (`netdriver::caller_receive`) and hands the events to the JS
//! callback at once, through `napi_make_callback` (so promise reactions and `nextTick`s run
//! after it, as after any I/O callback). Raw `dgram` pays no thread hand-off per datagram;
//! with this, neither do we while JS is idle. The driver thread keeps the timers and reads
//! what the JS thread leaves for longer than `netdriver::CALLER_GRACE` (JS busy).
//!
//! This is the binding's one I/O module: the libuv and Node-API calls below are the only
//! `unsafe` code of the crate besides what napi-rs generates. libuv's symbols are exported by
//! the Node.js executable on Linux and macOS (addons link against them at load time). On
//! Windows they are not reachable without linking node.lib, so there the driver thread stays
//! the only reader (the `not(unix)` build has no polls).
//!
//! `NETMESSAGES_JS_RECEIVE=0` in the environment switches this off for the process: every
//! datagram is then read by the driver thread, as before.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use napi::sys;
use netdriver::CallerSocket;

/// Whether the JS thread reads the sockets (the default where supported); the environment
/// variable `NETMESSAGES_JS_RECEIVE=0` turns it off.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        cfg!(unix)
            && !matches!(
                std::env::var("NETMESSAGES_JS_RECEIVE").as_deref(),
                Ok("0" | "false" | "off")
            )
    })
}

/// What the reader needs from an endpoint (a messages endpoint or a connection-API
/// instance).
pub struct Source {
    /// Whether the JS thread may read now, and the sockets open.
    pub sockets: Box<dyn Fn() -> (bool, Vec<CallerSocket>)>,
    /// Runs the receive rounds on one socket; false: the driver must read it.
    pub receive: Box<dyn Fn(&CallerSocket) -> bool>,
    /// The events waiting, as one JS value (an array), or `None` when none wait.
    pub take_events: Box<dyn Fn(sys::napi_env) -> napi::Result<Option<sys::napi_value>>>,
    /// Sends what is due (after the events' handlers ran: their answers carry the acks).
    pub transmit: Box<dyn Fn()>,
}

/// Where an endpoint's reader is found once made (empty before, or where none reads).
pub type ReaderSlot = Rc<RefCell<Weak<Reader>>>;

/// What a driver wake-up runs on the JS thread before its events are delivered (the reader
/// re-checks its polls: sockets or fake-network knobs may have changed), and the slot where
/// the reader goes once made.
pub fn sync_on_wake() -> (Rc<dyn Fn()>, ReaderSlot) {
    let slot: ReaderSlot = Rc::new(RefCell::new(Weak::new()));
    let s = Rc::clone(&slot);
    let on_wake: Rc<dyn Fn()> = Rc::new(move || {
        let reader = s.borrow().upgrade();
        if let Some(r) = reader {
            r.sync();
        }
    });
    (on_wake, slot)
}

/// Puts the reader (if any) in the slot of [`sync_on_wake`].
pub fn fill_slot(slot: &RefCell<Weak<Reader>>, reader: &Option<Rc<Reader>>) {
    if let Some(r) = reader {
        *slot.borrow_mut() = Rc::downgrade(r);
    }
}

/// How the reader reaches an endpoint: its driver (through `driver_of`) and its sink.
pub trait HasDriver: Send + Sync + 'static {
    /// The protocol the driver runs.
    type P: netdriver::Protocol;
    /// The driver.
    fn driver(&self) -> &netdriver::Driver<Self::P>;
}

impl HasDriver for netdriver::EndpointHandle {
    type P = netcore::p2p::layer::P2pLayer<netcore::messages::Messages>;
    fn driver(&self) -> &netdriver::Driver<Self::P> {
        netdriver::EndpointHandle::driver(self)
    }
}

impl HasDriver for netdriver::SocketsHandle {
    type P = netcore::p2p::layer::P2pLayer<netcore::sockets::Sockets>;
    fn driver(&self) -> &netdriver::Driver<Self::P> {
        netdriver::SocketsHandle::driver(self)
    }
}

/// The [`Source`] of an endpoint whose events go to `sink`.
pub fn reader_source<H, N>(
    handle: &Arc<H>,
    sink: Arc<crate::events::JsSink<<H::P as netcore::sans_io::SansIo>::Event, N>>,
) -> Source
where
    H: HasDriver,
    N: napi::bindgen_prelude::ToNapiValue
        + From<<H::P as netcore::sans_io::SansIo>::Event>
        + 'static,
{
    let (a, b, c) = (Arc::clone(handle), Arc::clone(handle), Arc::clone(handle));
    Source {
        sockets: Box::new(move || a.driver().caller_sockets()),
        receive: Box::new(move |s| b.driver().receive_here(s)),
        transmit: Box::new(move || c.driver().transmit_here()),
        take_events: Box::new(move |env| {
            let events = sink.take();
            if events.is_empty() {
                return Ok(None);
            }
            to_js(env, events).map(Some)
        }),
    }
}

/// One socket polled in the event loop.
struct Poll {
    /// libuv's handle, allocated by us (`uv_handle_size` bytes); freed by its close callback.
    handle: *mut c_void,
    socket: Rc<CallerSocket>,
}

/// What a poll's callbacks find through the handle's `data`.
struct PollData {
    /// Weak: the endpoint owns the reader; a callback holds it only while it runs, so a
    /// JS callback that lets go of the endpoint cannot free the reader under it.
    reader: Weak<Reader>,
    socket: Rc<CallerSocket>,
    /// The handle's memory (8-byte words), kept here so the close callback frees it.
    memory: *mut [u64],
}

/// The JS-thread reader of one endpoint. Lives on the JS thread (it is not `Send`).
pub struct Reader {
    /// Itself, for the polls' callbacks.
    me: Weak<Reader>,
    env: sys::napi_env,
    uv_loop: *mut c_void,
    callback: sys::napi_ref,
    async_context: sys::napi_async_context,
    /// Dropped at shutdown: it holds the endpoint and its sink (whose ThreadsafeFunction
    /// would otherwise keep the event loop alive for as long as the JS object lives).
    source: RefCell<Option<Source>>,
    polls: RefCell<Vec<Poll>>,
    keep_alive: Cell<bool>,
    closed: Cell<bool>,
}

#[cfg(unix)]
mod uv {
    //! The few libuv functions used (uv.h), resolved from the Node.js executable.
    use std::ffi::{c_int, c_void};

    /// `UV_POLL` in libuv's `uv_handle_type` (stable across libuv 1.x).
    pub const UV_POLL: c_int = 8;
    /// `UV_READABLE` in `uv_poll_event`.
    pub const UV_READABLE: c_int = 1;

    pub type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
    pub type CloseCb = unsafe extern "C" fn(handle: *mut c_void);

    extern "C" {
        pub fn uv_handle_size(kind: c_int) -> usize;
        pub fn uv_handle_set_data(handle: *mut c_void, data: *mut c_void);
        pub fn uv_handle_get_data(handle: *const c_void) -> *mut c_void;
        pub fn uv_poll_init(uv_loop: *mut c_void, handle: *mut c_void, fd: c_int) -> c_int;
        pub fn uv_poll_start(handle: *mut c_void, events: c_int, cb: PollCb) -> c_int;
        pub fn uv_poll_stop(handle: *mut c_void) -> c_int;
        pub fn uv_close(handle: *mut c_void, cb: Option<CloseCb>);
        pub fn uv_ref(handle: *mut c_void);
        pub fn uv_unref(handle: *mut c_void);
    }
}

impl Reader {
    /// A reader for the endpoint `source` describes, delivering to `callback` (the function
    /// the ThreadsafeFunction calls too). `None` where the JS thread does not read (switched
    /// off, or not supported on this OS).
    pub fn new(
        env: sys::napi_env,
        callback: sys::napi_value,
        source: Source,
    ) -> napi::Result<Option<Rc<Reader>>> {
        if !enabled() {
            return Ok(None);
        }
        let mut uv_loop: *mut sys::uv_loop_s = std::ptr::null_mut();
        // SAFETY: `env` is the live environment of the JS thread calling us; the out-pointer
        // is a local.
        check(unsafe { sys::napi_get_uv_event_loop(env, &mut uv_loop) })?;
        let mut reference: sys::napi_ref = std::ptr::null_mut();
        // SAFETY: `callback` is a function value of this call's scope; one strong reference,
        // deleted in `Drop`.
        check(unsafe { sys::napi_create_reference(env, callback, 1, &mut reference) })?;
        let mut name: sys::napi_value = std::ptr::null_mut();
        let text = "netmessages:receive";
        // SAFETY: `text` is valid UTF-8 of the given length.
        check(unsafe {
            sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut name)
        })?;
        let mut async_context: sys::napi_async_context = std::ptr::null_mut();
        // SAFETY: a resource name created above; no resource object. Destroyed in `Drop`.
        check(unsafe {
            sys::napi_async_init(env, std::ptr::null_mut(), name, &mut async_context)
        })?;
        let reader = Rc::new_cyclic(|me| Reader {
            me: me.clone(),
            env,
            uv_loop: uv_loop.cast(),
            callback: reference,
            async_context,
            source: RefCell::new(Some(source)),
            polls: RefCell::new(Vec::new()),
            keep_alive: Cell::new(true),
            closed: Cell::new(false),
        });
        reader.sync();
        Ok(Some(reader))
    }

    /// Polls every socket the JS thread may read now and no other (sockets come and go on
    /// the connection API; fake-network knobs and closing hand reading to the driver).
    pub fn sync(&self) {
        if self.closed.get() {
            return;
        }
        let Some((may, sockets)) = self.with_source(|s| (s.sockets)()) else {
            return;
        };
        let mut polls = self.polls.borrow_mut();
        let mut i = 0;
        while i < polls.len() {
            let keep = may
                && polls
                    .get(i)
                    .is_some_and(|p| sockets.iter().any(|s| s.is(&p.socket)));
            if keep {
                i += 1;
            } else {
                let p = polls.swap_remove(i);
                close_poll(p);
            }
        }
        if !may {
            return;
        }
        for s in sockets {
            if polls.iter().any(|p| p.socket.is(&s)) {
                continue;
            }
            if let Some(p) = self.open_poll(Rc::new(s)) {
                polls.push(p);
            }
        }
    }

    /// Whether the polls keep the event loop alive (`ref()` / `unref()`).
    pub fn set_ref(&self, keep_alive: bool) {
        self.keep_alive.set(keep_alive);
        for p in self.polls.borrow().iter() {
            set_handle_ref(p.handle, keep_alive);
        }
    }

    /// Runs `f` on the source, unless shut down. Never across a JS call (see `deliver`).
    fn with_source<R>(&self, f: impl FnOnce(&Source) -> R) -> Option<R> {
        self.source.borrow().as_ref().map(f)
    }

    /// Stops polling for good (the endpoint is closing): the driver reads what is left.
    pub fn shutdown(&self) {
        self.closed.set(true);
        drop(self.source.borrow_mut().take());
        for p in self.polls.borrow_mut().drain(..) {
            close_poll(p);
        }
    }

    /// Stops polling one socket (the driver declined or the poll failed).
    fn drop_poll(&self, socket: &CallerSocket) {
        let Ok(mut polls) = self.polls.try_borrow_mut() else {
            return;
        };
        if let Some(i) = polls.iter().position(|p| p.socket.is(socket)) {
            let p = polls.swap_remove(i);
            close_poll(p);
        }
    }

    #[cfg(unix)]
    fn open_poll(&self, socket: Rc<CallerSocket>) -> Option<Poll> {
        // SAFETY: a pure query of libuv's handle sizes.
        let size = unsafe { uv::uv_handle_size(uv::UV_POLL) };
        let memory: *mut [u64] = Box::into_raw(vec![0u64; size.div_ceil(8)].into_boxed_slice());
        let handle: *mut c_void = memory.cast();
        let data = Box::into_raw(Box::new(PollData {
            reader: self.me.clone(),
            socket: Rc::clone(&socket),
            memory,
        }));
        // SAFETY: `handle` points to `size` zeroed, 8-byte-aligned bytes that live until the
        // close callback frees them; the loop is this thread's; the descriptor is the
        // socket's, kept open by `socket` until the close callback drops it.
        let r = unsafe { uv::uv_poll_init(self.uv_loop, handle, socket.raw_fd()) };
        if r != 0 {
            // SAFETY: never initialised, so libuv does not know the handle: free it here.
            unsafe {
                drop(Box::from_raw(data));
                drop(Box::from_raw(memory));
            }
            return None;
        }
        // SAFETY: an initialised handle; `data` stays valid until the close callback.
        unsafe { uv::uv_handle_set_data(handle, data.cast()) };
        // SAFETY: an initialised handle on this thread's loop; `on_readable` matches uv_poll_cb.
        let r = unsafe { uv::uv_poll_start(handle, uv::UV_READABLE, on_readable) };
        let poll = Poll { handle, socket };
        if r != 0 {
            close_poll(poll);
            return None;
        }
        set_handle_ref(handle, self.keep_alive.get());
        poll.socket.set_polled(true);
        Some(poll)
    }

    #[cfg(not(unix))]
    fn open_poll(&self, _socket: Rc<CallerSocket>) -> Option<Poll> {
        None
    }

    /// Hands the events waiting to the JS callback, now, on this thread.
    fn deliver(&self) {
        let env = self.env;
        let mut scope: sys::napi_handle_scope = std::ptr::null_mut();
        // SAFETY: called from a libuv callback on the JS thread, where Node keeps the
        // isolate and its main context entered; the scope is closed below.
        if unsafe { sys::napi_open_handle_scope(env, &mut scope) } != sys::Status::napi_ok {
            return;
        }
        // Taken before the call: the callback may close the endpoint (and drop the source).
        if let Some(Ok(Some(events))) = self.with_source(|s| (s.take_events)(env)) {
            self.call(events);
        }
        // SAFETY: the scope opened above, closed once.
        unsafe { sys::napi_close_handle_scope(env, scope) };
    }

    fn call(&self, events: sys::napi_value) {
        let env = self.env;
        let mut func: sys::napi_value = std::ptr::null_mut();
        let mut recv: sys::napi_value = std::ptr::null_mut();
        let mut result: sys::napi_value = std::ptr::null_mut();
        // SAFETY: the reference and async context were made for this env in `new` and live
        // until `Drop`; `events` belongs to the open handle scope; out-pointers are locals.
        let status = unsafe {
            if sys::napi_get_reference_value(env, self.callback, &mut func) != sys::Status::napi_ok
                || func.is_null()
                || sys::napi_get_global(env, &mut recv) != sys::Status::napi_ok
            {
                return;
            }
            sys::napi_make_callback(env, self.async_context, recv, func, 1, &events, &mut result)
        };
        if status == sys::Status::napi_pending_exception {
            // As Node does for a throwing I/O callback: an uncaught exception.
            let mut err: sys::napi_value = std::ptr::null_mut();
            // SAFETY: an exception is pending on this env; out-pointer is a local.
            unsafe {
                if sys::napi_get_and_clear_last_exception(env, &mut err) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(env, err);
                }
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shutdown();
        // SAFETY: made in `new` for this env, which outlives its objects' finalizers; each
        // released once.
        unsafe {
            sys::napi_delete_reference(self.env, self.callback);
            sys::napi_async_destroy(self.env, self.async_context);
        }
    }
}

/// libuv: a polled socket is readable (or its poll failed).
#[cfg(unix)]
unsafe extern "C" fn on_readable(
    handle: *mut c_void,
    status: std::ffi::c_int,
    _events: std::ffi::c_int,
) {
    // SAFETY: libuv passes our live poll handle, whose data is the `PollData` set in
    // `open_poll` (freed only by the close callback, which has not run: a closed handle
    // gets no more callbacks).
    let data = unsafe { &*uv::uv_handle_get_data(handle).cast::<PollData>() };
    // The reader closes every poll when dropped, so it lives here; held for the callback.
    let Some(reader) = data.reader.upgrade() else {
        return;
    };
    let socket = Rc::clone(&data.socket);
    if status < 0 || reader.with_source(|s| (s.receive)(&socket)) != Some(true) {
        // The driver reads it from now on.
        socket.set_polled(false);
        reader.drop_poll(&socket);
    }
    reader.deliver();
    reader.with_source(|s| (s.transmit)());
}

/// libuv: a poll handle is closed; free what it held.
#[cfg(unix)]
unsafe extern "C" fn on_closed(handle: *mut c_void) {
    // SAFETY: the data set in `open_poll`, reclaimed once, here; after this callback libuv
    // no longer touches the handle, so its memory can go too.
    unsafe {
        let data = Box::from_raw(uv::uv_handle_get_data(handle).cast::<PollData>());
        let memory = data.memory;
        drop(data);
        drop(Box::from_raw(memory));
    }
}

/// Stops a poll and closes its handle; the socket stays open until the close callback.
fn close_poll(p: Poll) {
    p.socket.set_polled(false);
    #[cfg(unix)]
    // SAFETY: an initialised handle of this thread's loop, closed once (the `Poll` is
    // consumed); libuv stops polling the descriptor at once and calls `on_closed` later.
    unsafe {
        uv::uv_poll_stop(p.handle);
        uv::uv_close(p.handle, Some(on_closed));
    }
}

fn set_handle_ref(handle: *mut c_void, keep_alive: bool) {
    #[cfg(unix)]
    // SAFETY: an initialised, open handle of this thread's loop.
    unsafe {
        if keep_alive {
            uv::uv_ref(handle);
        } else {
            uv::uv_unref(handle);
        }
    }
    #[cfg(not(unix))]
    let _ = (handle, keep_alive);
}

/// Converts a value for JS, on the JS thread, inside the reader's handle scope (the only
/// place `Source::take_events` runs).
pub fn to_js<T: napi::bindgen_prelude::ToNapiValue>(
    env: sys::napi_env,
    value: T,
) -> napi::Result<sys::napi_value> {
    // SAFETY: `env` is the JS thread's environment, passed by `Reader::deliver` with a handle
    // scope open.
    unsafe { T::to_napi_value(env, value) }
}

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::GenericFailure,
            format!("Node-API call failed ({status})"),
        ))
    }
}
