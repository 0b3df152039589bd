//! The per-call sends (`sendMessageToUser`, and `sendMessageToConnection` of the connection
//! API) as plain N-API functions bound to one endpoint.
//!
//! A `#[napi]` method pays, per call, for napi-rs's borrow bookkeeping of `&self` (a scope
//! pushed and popped, the receiver registered and released: 14 % of a per-call unreliable
//! send's CPU in a profile) and for the identity copied into a fresh `String`. These
//! functions' data pointer holds the endpoint, so no receiver is unwrapped, and text
//! arguments are read into stack buffers. The batch sends stay `#[napi]` methods: one call
//! carries many messages there.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::ptr;
use std::sync::Arc;

use napi::sys;
use netcore::identity::Identity;
use netcore::EResult;
use netdriver::{EndpointHandle, SocketsHandle};

/// Longest identity or address text read without allocating (identities are at most ~80).
const TEXT_ON_STACK: usize = 128;

/// What a bound send function does with its arguments.
pub trait BoundSend: Send + Sync + 'static {
    /// Arguments it takes.
    const ARGS: usize;
    /// The JS function's name.
    const NAME: &'static str;
    /// What the function keeps between calls (on the JS thread only).
    type Memo: Default;
    /// The result for `argv` (exactly [`BoundSend::ARGS`] values), as a JS number.
    ///
    /// # Safety
    /// `env` and `argv` must be those of the running callback.
    unsafe fn call(
        &self,
        memo: &mut Self::Memo,
        env: sys::napi_env,
        argv: &[sys::napi_value],
    ) -> f64;
    /// The result when the arguments could not be read at all.
    fn refused() -> f64;
}

/// A function's data: its handle, and its memo (used on the JS thread only).
struct Slot<B: BoundSend> {
    handle: Arc<B>,
    memo: std::cell::RefCell<B::Memo>,
}

/// Makes the JS function that runs `B::call` on `handle`; the handle is freed with it.
pub fn make<B: BoundSend>(env: sys::napi_env, handle: Arc<B>) -> napi::Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(Slot::<B> {
        handle,
        memo: Default::default(),
    }));
    let mut func = ptr::null_mut();
    // SAFETY: `env` is the calling JS thread's; the name is valid UTF-8 of that length;
    // `data` stays valid until the finalizer below frees it with the function.
    let status = unsafe {
        sys::napi_create_function(
            env,
            B::NAME.as_ptr().cast(),
            B::NAME.len() as isize,
            Some(call::<B>),
            data.cast(),
            &mut func,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the function was not made, so nothing else holds `data`.
        drop(unsafe { Box::from_raw(data) });
        return Err(napi::Error::new(
            napi::Status::GenericFailure,
            "cannot create the send function",
        ));
    }
    // SAFETY: `func` is the live function just made; `finalize` frees `data` once, when the
    // function is collected (or the environment ends).
    let status = unsafe {
        sys::napi_add_finalizer(
            env,
            func,
            data.cast(),
            Some(finalize::<B>),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok {
        // Leaks one small box rather than risk a call after a free.
        return Err(napi::Error::new(
            napi::Status::GenericFailure,
            "cannot attach the send function's finalizer",
        ));
    }
    Ok(func)
}

unsafe extern "C" fn finalize<B: BoundSend>(
    _env: sys::napi_env,
    data: *mut c_void,
    _hint: *mut c_void,
) {
    // SAFETY: `data` is the box `make` leaked for this function; the finalizer runs once.
    drop(unsafe { Box::from_raw(data.cast::<Slot<B>>()) });
}

unsafe extern "C" fn call<B: BoundSend>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    const MAX_ARGS: usize = 8;
    let mut argc = MAX_ARGS;
    let mut argv = [ptr::null_mut(); MAX_ARGS];
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `info` is this call's; `argv` has room for `argc` values.
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    };
    let r = if status != sys::Status::napi_ok || data.is_null() || argc < B::ARGS {
        B::refused()
    } else {
        // SAFETY: `data` is the handle of this function, alive while the function is (it is
        // being called).
        let slot = unsafe { &*data.cast::<Slot<B>>() };
        match slot.memo.try_borrow_mut() {
            // SAFETY: `env` and `argv` are this call's; `B::ARGS <= argc <= MAX_ARGS`.
            Ok(mut memo) => unsafe { slot.handle.call(&mut memo, env, &argv[..B::ARGS]) },
            // Only a send from inside a send could find it taken; none can run JS.
            Err(_) => B::refused(),
        }
    };
    let mut out = ptr::null_mut();
    // SAFETY: `env` is this call's; `out` a local.
    unsafe { sys::napi_create_double(env, r, &mut out) };
    out
}

impl BoundSend for EndpointHandle {
    const ARGS: usize = 5;
    const NAME: &'static str = "sendFast";
    type Memo = LastIdentity;

    /// `(identity, remoteAddress | null | undefined, data, flags, channel)`: an `EResult`.
    unsafe fn call(
        &self,
        memo: &mut LastIdentity,
        env: sys::napi_env,
        argv: &[sys::napi_value],
    ) -> f64 {
        // SAFETY: the caller's contract.
        f64::from(unsafe { send_message(env, self, memo, argv) } as i32)
    }

    fn refused() -> f64 {
        f64::from(EResult::InvalidParam as i32)
    }
}

impl BoundSend for SocketsHandle {
    const ARGS: usize = 4;
    const NAME: &'static str = "sendToConnectionFast";
    type Memo = ();

    /// `(connection, data, flags, lane)`: the message number, or minus an `EResult`.
    unsafe fn call(&self, _: &mut (), env: sys::napi_env, argv: &[sys::napi_value]) -> f64 {
        let (mut h, mut flags, mut lane) = (0u32, 0u32, 0u32);
        // SAFETY: the caller's contract; out-pointers are locals.
        let (payload, ok) = unsafe {
            (
                bytes(env, argv[1]),
                u32_of(env, argv[0], &mut h)
                    && u32_of(env, argv[2], &mut flags)
                    && u32_of(env, argv[3], &mut lane),
            )
        };
        let (Some(payload), true, Ok(lane)) = (payload, ok, u16::try_from(lane)) else {
            return Self::refused();
        };
        crate::sockets::send_result(self.send(h, payload, flags, lane))
    }

    fn refused() -> f64 {
        crate::sockets::send_result(Err(EResult::InvalidParam))
    }
}

/// The call's body: every argument checked, `InvalidParam` for any that is wrong.
///
/// # Safety
/// `env` and `argv` must be those of the running callback.
unsafe fn send_message(
    env: sys::napi_env,
    handle: &EndpointHandle,
    last: &mut LastIdentity,
    argv: &[sys::napi_value],
) -> EResult {
    let mut id_buf = [0u8; TEXT_ON_STACK];
    // SAFETY: the callback's values (this function's contract).
    let Some(id_text) = (unsafe { text(env, argv[0], &mut id_buf) }) else {
        return EResult::InvalidParam;
    };
    let Some(peer) = last.parse(id_text) else {
        return EResult::InvalidParam;
    };
    let mut addr_buf = [0u8; TEXT_ON_STACK];
    // SAFETY: as above.
    let remote = match unsafe { value_type(env, argv[1]) } {
        Some(sys::ValueType::napi_null) | Some(sys::ValueType::napi_undefined) => None,
        Some(sys::ValueType::napi_string) => {
            // SAFETY: as above.
            let parsed = unsafe { text(env, argv[1], &mut addr_buf) }
                .and_then(|t| t.parse::<SocketAddr>().ok());
            match parsed {
                Some(a) => Some(a),
                None => return EResult::InvalidParam,
            }
        }
        _ => return EResult::InvalidParam,
    };
    // SAFETY: as above.
    let Some(payload) = (unsafe { bytes(env, argv[2]) }) else {
        return EResult::InvalidParam;
    };
    let (mut flags, mut channel) = (0u32, 0i32);
    // SAFETY: the callback's values; out-pointers are locals.
    let ok = unsafe {
        u32_of(env, argv[3], &mut flags)
            && sys::napi_get_value_int32(env, argv[4], &mut channel) == sys::Status::napi_ok
    };
    if !ok {
        return EResult::InvalidParam;
    }
    handle.send(peer, remote, payload, flags, channel)
}

/// The identity the last call named, parsed: a sender streaming to one peer parses its text
/// once (parsing was 8 % of a per-call send).
#[derive(Default)]
pub struct LastIdentity(Option<(String, Identity)>);

impl LastIdentity {
    fn parse(&mut self, text: &str) -> Option<&Identity> {
        let hit = self.0.as_ref().is_some_and(|(t, _)| t == text);
        if !hit {
            let id = text.parse::<Identity>().ok()?;
            self.0 = Some((text.to_owned(), id));
        }
        self.0.as_ref().map(|(_, id)| id)
    }
}

/// A `Uint8Array`'s bytes (a `Buffer` is one); `None` for anything else.
///
/// # Safety
/// `env` and `value` must be those of the running callback; the slice must not outlive it.
unsafe fn bytes<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a [u8]> {
    let mut kind = sys::TypedarrayType::uint8_array;
    let mut len = 0usize;
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: the out-pointers are locals; a value that is not a typed array fails.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut kind,
            &mut len,
            &mut data,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
        return None;
    }
    if len == 0 || data.is_null() {
        return Some(&[]);
    }
    // SAFETY: N-API reports `len` bytes at `data` (already past the view's offset), valid
    // while the array lives: the running callback, in which no JS runs before we are done.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// A JS number as `u32` (as N-API converts it); false if not a number.
///
/// # Safety
/// `env` and `value` must be those of the running callback.
unsafe fn u32_of(env: sys::napi_env, value: sys::napi_value, out: &mut u32) -> bool {
    // SAFETY: this function's contract; `out` is valid.
    unsafe { sys::napi_get_value_uint32(env, value, out) == sys::Status::napi_ok }
}

/// The JS type of `value`.
///
/// # Safety
/// `env` and `value` must be those of the running callback.
unsafe fn value_type(env: sys::napi_env, value: sys::napi_value) -> Option<sys::napi_valuetype> {
    let mut t = sys::ValueType::napi_undefined;
    // SAFETY: this function's contract; `t` a local.
    (unsafe { sys::napi_typeof(env, value, &mut t) } == sys::Status::napi_ok).then_some(t)
}

/// A JS string's UTF-8 text, in `buf` (`None`: not a string, or too long for `buf`).
///
/// # Safety
/// `env` and `value` must be those of the running callback.
unsafe fn text(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut [u8; TEXT_ON_STACK],
) -> Option<&str> {
    let mut len = 0usize;
    // SAFETY: this function's contract; N-API writes at most `buf.len()` bytes (with a NUL).
    let status = unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    // A text that fills the buffer may have been cut: no identity or address is that long.
    if status != sys::Status::napi_ok || len + 1 >= buf.len() {
        return None;
    }
    std::str::from_utf8(buf.get(..len)?).ok()
}
