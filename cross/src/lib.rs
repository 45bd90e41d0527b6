//! Outpost for mobile apps: the FFI surface (UniFFI) and cross-compilation targets.
//!
//! Empty until the cross issue lands: the `Engine` object exported to Kotlin, Swift and Python
//! will wrap `outpost_core::Engine` here. It exposes no API yet, so nothing can mistake it for a
//! working binding.
