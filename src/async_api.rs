//! Async entry points (feature `tokio`) for services that open files inside a tokio runtime.
//!
//! Each call runs the same sandboxed path as its blocking twin on tokio's blocking pool, so a
//! guest's CPU time never holds a runtime worker (a runtime with one worker stays responsive
//! while guests run). Dropping the returned future cancels the call: the guest is interrupted at
//! its next epoch tick (every 5 ms), its store is dropped and its pool
//! slot is free again, typically within 10 ms; a call still waiting for a slot gives up without
//! running.
//!
//! ```
//! # fn main() -> sandload::Result<()> {
//! let sandbox = sandload::Sandbox::new()?;
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let input = sandload::Input::from_bytes(sandload_samples::small_checkpoint(), "model.safetensors");
//! let opened = runtime.block_on(sandbox.open_async(input))?;
//! assert!(matches!(opened, sandload::Opened::Checkpoint(_)));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::formats::picture::DecodedImage;
use crate::formats::raw::RawImage;
use crate::formats::safetensors::Checkpoint;
use crate::input::Input;
use crate::open::Opened;
use crate::sandbox::Sandbox;

/// Sets the flag when the future that owns it is dropped before the call finished.
struct CancelOnDrop(Arc<AtomicBool>, bool);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

impl Sandbox {
    async fn run_blocking<T: Send + 'static>(
        &self,
        input: Input,
        call: impl FnOnce(&Sandbox, Input) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut guard = CancelOnDrop(Arc::clone(&flag), false);
        // The flag reaches every guest call of this file through the handle it runs on.
        let sandbox = self.cancellable(flag);
        let name = input.name().to_path_buf();
        let task = tokio::task::spawn_blocking(move || call(&sandbox, input));
        let result = task.await;
        guard.1 = true;
        match result {
            Ok(result) => result,
            // A panic in sandload (a bug): reported, not propagated into the caller's task.
            Err(e) => Err(Error::Internal(format!("{}: the blocking task failed: {e}", name.display()))),
        }
    }

    /// [`open`](Sandbox::open) for async callers. The call runs on tokio's blocking pool (a
    /// guest never holds a runtime worker); dropping the future interrupts the guest at its next
    /// 5 ms epoch tick and frees its slot. Must be polled inside a tokio runtime.
    ///
    /// # Errors
    /// As [`open`](Sandbox::open).
    pub async fn open_async(&self, input: Input) -> Result<Opened> {
        self.run_blocking(input, |s, i| s.open(i)).await
    }

    /// [`open_safetensors`](Sandbox::open_safetensors) for async callers.
    ///
    /// # Errors
    /// As [`open_safetensors`](Sandbox::open_safetensors).
    pub async fn open_safetensors_async(&self, input: Input) -> Result<Checkpoint> {
        self.run_blocking(input, |s, i| s.open_safetensors(i)).await
    }

    /// [`decode_raw`](Sandbox::decode_raw) for async callers.
    ///
    /// # Errors
    /// As [`decode_raw`](Sandbox::decode_raw).
    pub async fn decode_raw_async(&self, input: Input) -> Result<RawImage> {
        self.run_blocking(input, |s, i| s.decode_raw(i)).await
    }

    /// [`decode_image`](Sandbox::decode_image) for async callers.
    ///
    /// # Errors
    /// As [`decode_image`](Sandbox::decode_image).
    pub async fn decode_image_async(&self, input: Input) -> Result<DecodedImage> {
        self.run_blocking(input, |s, i| s.decode_image(i)).await
    }
}
