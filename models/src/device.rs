//! Choice of the compute device for the model.

use candle_core::Device;

/// Returns the device to run the model on.
///
/// With the `cuda` feature and `prefer_gpu`, this is CUDA device 0 if it can be opened. If the
/// feature is on but no GPU is usable, one warning is logged and the CPU is used. Without the
/// feature the CPU is returned silently.
pub fn select_device(prefer_gpu: bool) -> Device {
    #[cfg(feature = "cuda")]
    if prefer_gpu {
        match Device::new_cuda(0) {
            Ok(device) => return device,
            Err(err) => {
                // candle appends a backtrace to CUDA errors; the first line says what failed.
                let err = err.to_string();
                let reason = err.lines().next().unwrap_or("unknown error").trim();
                tracing::warn!(
                    "built with CUDA support but no usable GPU ({reason}); using the CPU"
                )
            }
        }
    }
    // Without the feature the preference has nothing to choose between.
    #[cfg(not(feature = "cuda"))]
    let _ = prefer_gpu;
    Device::Cpu
}
