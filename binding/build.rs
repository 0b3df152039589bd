//! Build script: the linker settings a Node.js addon needs (napi-build).
fn main() {
    napi_build::setup();
}
