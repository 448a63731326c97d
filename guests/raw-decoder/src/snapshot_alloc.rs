//! The guest's global allocator: the system allocator until the Wizer snapshot is taken, then a
//! fresh `dlmalloc` heap that grows memory above everything the snapshot holds.
//!
//! Why: wasmtime resets a reused pool slot by re-copying only the pages the last file dirtied, but
//! only if they form at most 32 regions (its `PAGEMAP_SCAN` buffer); past that it hands the rest
//! of memory back to the kernel, and the next file takes a page fault on every page it touches,
//! including every page of rawler's camera catalogue it only reads. Building the catalogue leaves
//! its heap full of freed holes; allocating into those holes after the snapshot scattered the
//! dirty pages of a 1 MP decode over hundreds of regions (measured: the scan always returned the
//! maximum, then 24 MB were decommitted per file). With new allocations above the snapshot, a
//! file dirties the stack, a few statics and one contiguous heap, and the catalogue's pages stay
//! mapped from one file to the next.
//!
//! Large zeroed allocations (the file buffer the host writes into, rawler's frame buffers) come
//! straight from `memory.grow`, whose pages the wasm specification guarantees are zero (a reused
//! pool slot is reset by wasmtime to exactly that state), so they are never cleared twice.
//! `dlmalloc` 0.2's `calloc` clears every block it returns; for a 12 MP file that was 45 MiB of
//! `memset` per call. A freed large block is reused (and then cleared) by a later large request
//! it fits, so a decoder that allocates and frees large buffers in a loop does not grow memory
//! without bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// See the module documentation.
pub struct SnapshotAlloc {
    state: UnsafeCell<State>,
}

struct State {
    /// Where the snapshot's memory ended when [`SnapshotAlloc::seal`] ran; 0 before. Every
    /// allocation below it came from [`System`], every later one from `fresh` or `large`.
    boundary: usize,
    fresh: dlmalloc::Dlmalloc,
    large: [Large; MAX_LARGE],
}

/// Zeroed requests of at least this many bytes are served from whole wasm pages.
const LARGE: usize = 256 << 10;
/// Large blocks tracked at once; past that, large requests go to `dlmalloc`.
const MAX_LARGE: usize = 32;
const PAGE: usize = 64 << 10;

/// A block of whole pages from `memory.grow`: `pages == 0` is an unused entry.
#[derive(Clone, Copy)]
struct Large {
    ptr: usize,
    pages: usize,
    in_use: bool,
}

// SAFETY: wasm32-wasip1 guests are single-threaded (no threads, no shared memory), so the state
// is never accessed concurrently.
unsafe impl Sync for SnapshotAlloc {}

impl SnapshotAlloc {
    pub const fn new() -> SnapshotAlloc {
        let none = Large { ptr: 0, pages: 0, in_use: false };
        SnapshotAlloc {
            state: UnsafeCell::new(State { boundary: 0, fresh: dlmalloc::Dlmalloc::new(), large: [none; MAX_LARGE] }),
        }
    }

    /// Switches to the fresh heap. Called once, at the end of the Wizer initializer.
    pub fn seal(&self) {
        // SAFETY: single-threaded (see the Sync impl), and no allocation is in progress.
        let state = unsafe { &mut *self.state.get() };
        if state.boundary == 0 {
            state.boundary = core::arch::wasm32::memory_size(0) * 65536;
        }
    }

    /// The state and whether `ptr` (if any) belongs to the system allocator.
    #[allow(clippy::mut_from_ref)]
    fn state(&self) -> &mut State {
        // SAFETY: single-threaded, and the allocator never re-enters itself.
        unsafe { &mut *self.state.get() }
    }
}

impl State {
    fn sealed(&self) -> bool {
        self.boundary != 0
    }

    fn from_system(&self, ptr: *mut u8) -> bool {
        !self.sealed() || (ptr as usize) < self.boundary
    }

    /// A zeroed block of `size` bytes from whole pages: a freed large block it fits (cleared),
    /// or new pages (zero by the wasm specification). `None` when untracked or out of memory.
    fn large_zeroed(&mut self, size: usize) -> Option<*mut u8> {
        let pages = size.div_ceil(PAGE);
        if let Some(block) = self.large.iter_mut().find(|b| b.pages >= pages && !b.in_use) {
            block.in_use = true;
            let ptr = block.ptr as *mut u8;
            // SAFETY: the block is ours (whole pages of linear memory), at least `size` long.
            unsafe { core::ptr::write_bytes(ptr, 0, size) };
            return Some(ptr);
        }
        let slot = self.large.iter_mut().find(|b| b.pages == 0)?;
        let old = core::arch::wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return None;
        }
        *slot = Large { ptr: old * PAGE, pages, in_use: true };
        Some(slot.ptr as *mut u8)
    }

    fn large_block(&mut self, ptr: *mut u8) -> Option<&mut Large> {
        self.large.iter_mut().find(|b| b.pages != 0 && b.in_use && b.ptr == ptr as usize)
    }
}

unsafe impl GlobalAlloc for SnapshotAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let state = self.state();
        if state.sealed() {
            unsafe { state.fresh.malloc(layout.size(), layout.align()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let state = self.state();
        if state.sealed() {
            if layout.size() >= LARGE && layout.align() <= PAGE {
                if let Some(ptr) = state.large_zeroed(layout.size()) {
                    return ptr;
                }
            }
            unsafe { state.fresh.calloc(layout.size(), layout.align()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let state = self.state();
        if state.from_system(ptr) {
            unsafe { System.dealloc(ptr, layout) }
        } else if let Some(block) = state.large_block(ptr).filter(|_| layout.size() >= LARGE) {
            block.in_use = false;
        } else {
            unsafe { state.fresh.free(ptr, layout.size(), layout.align()) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let state = self.state();
        if !state.sealed() {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // A large block always has a layout of at least LARGE bytes (dealloc relies on it).
        if let Some(block) = state.large_block(ptr).filter(|_| layout.size() >= LARGE) {
            if new_size >= LARGE && block.pages * PAGE >= new_size {
                return ptr;
            }
            // Move it to dlmalloc, then give the block back for reuse.
            let new = unsafe { state.fresh.malloc(new_size, layout.align()) };
            if !new.is_null() {
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
                if let Some(block) = state.large_block(ptr) {
                    block.in_use = false;
                }
            }
            return new;
        }
        if !state.from_system(ptr) {
            return unsafe { state.fresh.realloc(ptr, layout.size(), layout.align(), new_size) };
        }
        // Growing something the snapshot holds: move it to the fresh heap.
        let new = unsafe { state.fresh.malloc(new_size, layout.align()) };
        if !new.is_null() {
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                System.dealloc(ptr, layout);
            }
        }
        new
    }
}
