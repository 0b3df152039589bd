//! `sendMessageToUser`'s native call as a plain N-API function bound to one endpoint.
//!
//! A `#[napi]` method pays, per call, for napi-rs's borrow bookkeeping of `&self` (a scope
//! pushed and popped, the receiver registered and released: 14 % of a per-call unreliable
//! send's CPU in a profile) and for the identity copied into a fresh `String`. This
//! function's data pointer holds the endpoint, so no receiver is unwrapped, and the
//! identity is read into a stack buffer. It does what `NativeEndpoint::send` does and
//! returns the same `EResult` values.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::ptr;
use std::sync::Arc;

use napi::sys;
use netcore::identity::Identity;
use netcore::EResult;
use netdriver::EndpointHandle;

/// Longest identity or address text read without allocating (identities are at most ~80).
const TEXT_ON_STACK: usize = 128;

/// The endpoint a function holds, freed with the function.
struct Bound(Arc<EndpointHandle>);

/// Makes `send(identity, remoteAddress | null, data: Uint8Array, flags, channel) -> EResult`
/// for `handle`.
pub fn make(env: sys::napi_env, handle: Arc<EndpointHandle>) -> napi::Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(Bound(handle)));
    let name = "sendFast";
    let mut func = ptr::null_mut();
    // SAFETY: `env` is the calling JS thread's; `name` is valid UTF-8 of that length; `data`
    // stays valid until the finalizer below frees it with the function.
    let status = unsafe {
        sys::napi_create_function(
            env,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(call),
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
            Some(finalize),
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

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the box `make` leaked for this function; the finalizer runs once.
    drop(unsafe { Box::from_raw(data.cast::<Bound>()) });
}

unsafe extern "C" fn call(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 5usize;
    let mut argv = [ptr::null_mut(); 5];
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
    let r = if status != sys::Status::napi_ok || data.is_null() || argc < 5 {
        EResult::InvalidParam
    } else {
        // SAFETY: `data` is the `Bound` of this function, alive while the function is (it is
        // being called).
        let bound = unsafe { &*data.cast::<Bound>() };
        // SAFETY: `env` and `argv` are this call's.
        unsafe { send(env, &bound.0, &argv) }
    };
    let mut out = ptr::null_mut();
    // SAFETY: `env` is this call's; `out` a local.
    unsafe { sys::napi_create_int32(env, r as i32, &mut out) };
    out
}

/// The call's body: every argument checked, `InvalidParam` for any that is wrong.
///
/// # Safety
/// `env` and `argv` must be those of the running callback.
unsafe fn send(
    env: sys::napi_env,
    handle: &EndpointHandle,
    argv: &[sys::napi_value; 5],
) -> EResult {
    let mut id_buf = [0u8; TEXT_ON_STACK];
    // SAFETY: the callback's values (this function's contract).
    let Some(id_text) = (unsafe { text(env, argv[0], &mut id_buf) }) else {
        return EResult::InvalidParam;
    };
    let Ok(peer) = id_text.parse::<Identity>() else {
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
    let mut kind = sys::TypedarrayType::uint8_array;
    let mut len = 0usize;
    let mut bytes: *mut c_void = ptr::null_mut();
    // SAFETY: the out-pointers are locals; a value that is not a typed array fails.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            argv[2],
            &mut kind,
            &mut len,
            &mut bytes,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
        return EResult::InvalidParam;
    }
    let payload: &[u8] = if len == 0 || bytes.is_null() {
        &[]
    } else {
        // SAFETY: N-API reports `len` bytes at `bytes`, valid while the array lives (this
        // call); nothing JS can run before we are done with them.
        unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), len) }
    };
    let (mut flags, mut channel) = (0u32, 0i32);
    // SAFETY: the callback's values; out-pointers are locals.
    let ok = unsafe {
        sys::napi_get_value_uint32(env, argv[3], &mut flags) == sys::Status::napi_ok
            && sys::napi_get_value_int32(env, argv[4], &mut channel) == sys::Status::napi_ok
    };
    if !ok {
        return EResult::InvalidParam;
    }
    handle.send(&peer, remote, payload, flags, channel)
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
