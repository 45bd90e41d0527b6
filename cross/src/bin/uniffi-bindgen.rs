//! The in-repository UniFFI bindings generator: `uniffi-bindgen generate --library
//! liboutpost_ffi.so --language python|kotlin|swift --out-dir DIR` (see cross/scripts/bindings.sh).

fn main() {
    uniffi::uniffi_bindgen_main()
}
