//! A symbolic walk of Python pickle opcodes: what `pickle.load` would do with some bytes, without
//! doing any of it. "`pickle.load`" means *both* of CPython's unpicklers, for every CPython from
//! 3.9: the C one (`Modules/_pickle.c`, `pickle.Unpickler`, what `pickle.load`, `torch.load`,
//! `numpy.load` and cloudpickle use) and the pure-Python one (`Lib/pickle.py`,
//! `pickle._Unpickler`, which joblib, dill and pandas' `read_pickle` fallback subclass). They do
//! not accept the same bytes, and an attacker picks whichever loader runs the file, so the walk
//! goes on wherever *either* goes on.
//!
//! The walker decodes each opcode and its argument, and tracks what decides whether an unpickler
//! goes on: the stack depth, the mark stack with CPython's *fence* (no opcode pops below the
//! innermost mark), the memo keys, and the strings on the stack (so that `STACK_GLOBAL`'s module
//! and name can be reported). It never builds an object, imports a module or calls anything.
//!
//! It accepts a *superset* of what either unpickler accepts, so whatever CPython would execute
//! the walker walks (and reports), while it fails where both certainly fail — lines without a
//! newline (before the end of the file), numbers that do not parse, an unknown opcode, a stack
//! underflow, a missing memo entry, a call of a value the file built itself (a number, a string,
//! a container) — so that bytes that are not a pickle stop within a few opcodes. Where the two
//! unpicklers differ, the walk takes the more permissive reading:
//!
//! | | C (`_pickle.c`) | pure Python (`pickle.py`) | walker |
//! |---|---|---|---|
//! | `FLOAT` | `PyOS_string_to_double` up to a NUL, no whitespace | `float()`: whitespace around, `_` between digits, no NUL | either |
//! | `INT`, `LONG` | `strtol`/`PyLong_FromString` up to a NUL | `int(x, 0)` of the whole line | either |
//! | `PUT`/`GET` keys | a `Py_ssize_t` | any Python `int` (beyond 64 bits) | any size |
//! | `FRAME` longer than the rest of the file | refused | read short (`_Unframer`), then run | walks on |
//! | an argument straddling a frame's end | read | refused | read |
//! | `GLOBAL`/`INST` lines | non-empty | may be empty (`find_class('', ...)` still runs) | may be empty |
//! | `INST` without a `MARK` | refused before the import | imports (`find_class`), then fails | imports |
//! | a last line without `\n` at the end of the file | refused | `readline()[:-1]`: the line minus its last byte | as Python, with [`WalkLimits::whole_file`] |
//! | a read across a frame's end; a `STOP` before it, then another pickle (old C, reading a file) | the rest of the frame may be dropped: another reading of the same bytes | refused | [`End::Ambiguous`] |
//!
//! The other approximations all lean towards walking on:
//!
//! - string contents are not escape-decoded (`S`, `V`) nor decoded with the unpickler's encoding
//!   (`S`, `T`, `U`), and numbers are checked for their shape, not parsed exactly;
//! - only three kinds of values are told apart: strings, other values built from the file's bytes
//!   (never callable), and *objects* (what an import, a call or a persistent load
//!   produced, which may be anything); `APPEND` onto a number walks on;
//! - a persistent load is assumed to have a `persistent_load` to call, and `NEXT_BUFFER` a
//!   `buffers` argument;
//! - memo keys longer than [`MAX_KEY_DIGITS`] digits are compared by their first digits and their
//!   length, and once the memo holds [`WalkLimits::max_memo`] keys, every lookup succeeds.
//!
//! Used by the `safetensors-header` guest (is a checkpoint also a pickle from byte 0?), by the
//! `pickle-scan` guest (what would a refused pickle import and call?) and by the host's sniffer
//! (is this a pickle?, on a bounded window); `sandload_abi::pickle` re-exports it, since [`Walk`]
//! and [`End`] cross the guest/host boundary. `tests/cpython.rs` checks the superset claim
//! against both unpicklers of the `python3` on the machine.
//!
//! `no_std` (with `alloc`), no `unsafe`, no dependency but serde's derive: usable by any tool that
//! needs to know what a pickle would do without running it.
//!
//! ```
//! use pickle_walk::{End, WalkLimits, walk};
//! let w = walk(b"cos\nsystem\n(S'echo hi'\ntR.", &WalkLimits::default());
//! assert_eq!(w.end, End::Stop);
//! assert_eq!(w.imports, vec![("os".into(), "system".into())]);
//! assert_eq!((w.calls, w.first_effect_offset), (1, Some(0)));
//! assert!(w.has_effects());
//! ```

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;
// `arbitrary`'s derive names `std` paths; the feature is only ever on in the (std) fuzz crate.
#[cfg(any(test, feature = "arbitrary"))]
extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Bounds on one walk. The defaults keep a walk of untrusted bytes to milliseconds and a few
/// megabytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkLimits {
    /// Most opcodes decoded; a walk still going after them ends [`End::OpLimit`].
    /// By default this is [`WalkLimits::DEFAULT_MAX_OPS`].
    pub max_ops: u64,
    /// Most distinct imports recorded (more are counted in [`Walk::more_imports`]).
    /// By default this is [`WalkLimits::DEFAULT_MAX_IMPORTS`].
    pub max_imports: usize,
    /// Longest string kept for `STACK_GLOBAL` and import names, in bytes (longer are cut).
    /// By default this is [`WalkLimits::DEFAULT_MAX_STRING`].
    pub max_string: usize,
    /// Most memo keys tracked; beyond it every lookup is assumed to succeed.
    /// By default this is [`WalkLimits::DEFAULT_MAX_MEMO`].
    pub max_memo: usize,
    /// The data handed to the walk is the whole file, so its end is the file's end. The
    /// pure-Python unpickler (`pickle._Unpickler`: joblib, dill, pandas' fallback) reads a last
    /// line without a newline as `readline()` returns it, and `GLOBAL`/`INST` there still reach
    /// `find_class`; a walk of a window cannot know and ends [`End::Truncated`] instead.
    /// By default this is `false`.
    pub whole_file: bool,
    /// Whether the first pickle's unpickler may have a `persistent_load`. A plain `pickle.load`,
    /// `joblib.load`, `numpy.load` or `pandas.read_pickle` has none and raises at the first
    /// `PERSID`/`BINPERSID`; torch.load's legacy path gives one only to its fourth `load`, and
    /// its zip path only to `data.pkl` inside the archive. So for a file read from byte 0 the
    /// first pickle's persistent loads end the walk (what follows is later pickles of a stream,
    /// which may have one). By default this is `true` (a pickle walked for what it is, such as a
    /// `data.pkl`, gets one).
    pub first_has_persistent_load: bool,
}

impl WalkLimits {
    /// 1,000,000 opcodes.
    pub const DEFAULT_MAX_OPS: u64 = 1_000_000;
    /// 64 imports.
    pub const DEFAULT_MAX_IMPORTS: usize = 64;
    /// 256 bytes.
    pub const DEFAULT_MAX_STRING: usize = 256;
    /// 100,000 memo keys.
    pub const DEFAULT_MAX_MEMO: usize = 100_000;
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_ops: Self::DEFAULT_MAX_OPS,
            max_imports: Self::DEFAULT_MAX_IMPORTS,
            max_string: Self::DEFAULT_MAX_STRING,
            max_memo: Self::DEFAULT_MAX_MEMO,
            whole_file: false,
            first_has_persistent_load: true,
        }
    }
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum End {
    /// At a `STOP`: `pickle.load` would return here (for [`walk_stream`]: the last pickle ended
    /// exactly at the end of the data).
    Stop,
    /// At an opcode CPython would reject: unknown, bad argument, stack underflow, missing memo.
    Invalid,
    /// An argument (or the next opcode) runs past the end of the data.
    Truncated,
    /// [`WalkLimits::max_ops`] opcodes were decoded and the walk was still going.
    OpLimit,
    /// The walk found no import or call, but it read across the end of a `FRAME` (one argument
    /// or line that starts inside the frame and ends after it), or in a stream a `STOP` left
    /// bytes of its frame unread: CPython's C unpickler before 3.13.15 and 3.14.7, reading a
    /// file, may then drop the rest of the frame and go on at another byte, so the bytes have
    /// another reading the walk did not follow and it cannot vouch for them. `pickle.dump` never
    /// writes either. Treated like [`End::OpLimit`]: undecided.
    Ambiguous,
}

/// What a walk found. Offsets are byte offsets into the walked data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Walk {
    /// How the walk ended.
    pub end: End,
    /// Offset of the opcode where it ended (the `STOP`, the rejected or truncated opcode, or the
    /// end of the data).
    pub end_offset: u64,
    /// Opcodes decoded successfully (`STOP`s included).
    pub ops: u64,
    /// Complete pickles (`STOP`s reached).
    pub pickles: u32,
    /// The highest protocol a `PROTO` opcode declared.
    pub protocol: Option<u8>,
    /// Globals unpickling would import, `(module, name)`, deduplicated, in order, each cut to
    /// [`WalkLimits::max_string`] bytes. A `STACK_GLOBAL` part that is not a string of the file's
    /// own is `"?"`; `EXT1/2/4` are `("copyreg", "extension <code>")`.
    pub imports: Vec<(String, String)>,
    /// Distinct imports beyond [`WalkLimits::max_imports`] (not listed in `imports`).
    pub more_imports: u64,
    /// Calls: `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`, and `BUILD` of an object that may
    /// have a `__setstate__` (a `BUILD` of a value the file built itself runs nothing).
    pub calls: u64,
    /// Persistent loads: `PERSID`, `BINPERSID` (calls of the unpickler's `persistent_load`).
    pub persistent_loads: u64,
    /// Offset of the first opcode that imports or calls (persistent loads are counted in
    /// [`Walk::persistent_loads`], not here: they call the loader's own `persistent_load`).
    pub first_effect_offset: Option<u64>,
    /// Why the walk ended, e.g. `"unknown opcode 0x7b"`, `"stack underflow at REDUCE"`.
    pub reason: String,
}

impl Walk {
    /// True if unpickling would import or call something before it stopped.
    pub fn has_effects(&self) -> bool {
        self.first_effect_offset.is_some()
    }
}

/// The name of pickle opcode `b`, or `None` if CPython does not know it.
pub fn opcode_name(b: u8) -> Option<&'static str> {
    Some(match b {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Walks one pickle from offset 0, as one `pickle.load` call would.
///
/// # Examples
/// ```
/// use pickle_walk::{End, WalkLimits, walk};
/// // A safetensors header length is not a pickle: 0x50 is PERSID, whose line never ends.
/// let w = walk(b"\x50\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", &WalkLimits::default());
/// assert_eq!(w.end, End::Truncated);
/// assert!(!w.has_effects());
/// ```
pub fn walk(data: &[u8], limits: &WalkLimits) -> Walk {
    let mut w = Walker::new(data, limits);
    w.run(0);
    w.finish()
}

/// Walks `data` as `pickle.load` called again and again on one file would (what torch's legacy
/// loader does): after each `STOP` a fresh unpickler (empty stack, marks and memo) continues at
/// the next byte. Ends at the first pickle that is invalid, truncated or over the opcode budget,
/// or with [`End::Stop`] when a `STOP` ends exactly at the end of `data`. Imports, calls and the
/// opcode budget add up over all the pickles.
///
/// # Examples
/// ```
/// use pickle_walk::{End, WalkLimits, walk_stream};
/// let w = walk_stream(b"K\x01.cos\nsystem\n.", &WalkLimits::default());
/// assert_eq!((w.end, w.pickles, w.end_offset), (End::Stop, 2, 14));
/// assert_eq!(w.imports, vec![("os".into(), "system".into())]);
/// ```
pub fn walk_stream(data: &[u8], limits: &WalkLimits) -> Walk {
    let mut w = Walker::new(data, limits);
    w.stream = true;
    let mut at = 0usize;
    while let Some(next) = w.run(at) {
        if next >= data.len() {
            break;
        }
        at = next;
    }
    w.finish()
}

/// The most digits of a text memo key (`PUT`/`GET`) that are compared; longer keys are told
/// apart by these digits and their length only (two different long keys may then meet, which
/// can only make a lookup succeed: towards walking on).
pub const MAX_KEY_DIGITS: usize = 64;

/// A memo key. The C unpickler's keys are `Py_ssize_t`; the pure-Python one's are Python ints of
/// any size, so a text key beyond 64 bits is kept as its digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum MemoKey {
    Int(u64),
    /// Canonical decimal digits (no sign, no leading zeros, no underscores) of a key over
    /// `u64::MAX`, cut to [`MAX_KEY_DIGITS`], and the full number of digits.
    Big(Rc<[u8]>, usize),
}

/// A value on the simulated stack.
#[derive(Clone)]
enum Value {
    /// A string the file spells out (cut to `max_string` bytes). `Rc` keeps `DUP` and `GET` of a
    /// long string from multiplying memory.
    Str(Rc<str>),
    /// Any other value built from the file's own bytes: a number, bytes, `None`, a container.
    /// Never callable, so a call of one fails in CPython with a `TypeError` before anything runs.
    Literal,
    /// What an import, a call or a persistent load produced: may be anything.
    Object,
}

struct Walker<'a> {
    data: &'a [u8],
    limits: &'a WalkLimits,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: BTreeMap<MemoKey, Value>,
    /// A key was not stored because the memo was full: lookups can no longer fail.
    memo_full: bool,
    /// Where the current `FRAME` ends, if one was read.
    frame_end: Option<usize>,
    /// A read of the current opcode (one `read()` or `readline()` of the unpicklers) crossed
    /// `frame_end`.
    straddled: core::cell::Cell<bool>,
    /// Why the bytes have another reading (the first read across a frame's end), if they do.
    ambiguous: Option<String>,
    /// Walking a stream of pickles (`walk_stream`): what follows a `STOP` is read next.
    stream: bool,
    result: Walk,
}

/// Why one opcode could not be decoded.
enum Fail {
    Invalid(String),
    Truncated,
}

type Step<T> = Result<T, Fail>;

fn invalid<T>(why: impl Into<String>) -> Step<T> {
    Err(Fail::Invalid(why.into()))
}

impl<'a> Walker<'a> {
    fn new(data: &'a [u8], limits: &'a WalkLimits) -> Self {
        Walker {
            data,
            limits,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: BTreeMap::new(),
            memo_full: false,
            frame_end: None,
            straddled: core::cell::Cell::new(false),
            ambiguous: None,
            stream: false,
            result: Walk {
                end: End::Truncated,
                end_offset: 0,
                ops: 0,
                pickles: 0,
                protocol: None,
                imports: Vec::new(),
                more_imports: 0,
                calls: 0,
                persistent_loads: 0,
                first_effect_offset: None,
                reason: String::new(),
            },
        }
    }

    /// Walks one pickle from `start` with a fresh unpickler. Returns the offset after its STOP,
    /// or `None` when the walk ended otherwise (the result says how).
    fn run(&mut self, start: usize) -> Option<usize> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.memo_full = false;
        self.frame_end = None;
        let mut at = start;
        loop {
            if self.result.ops >= self.limits.max_ops {
                return self.end(End::OpLimit, at, String::from("opcode budget exhausted"));
            }
            let Some(&op) = self.data.get(at) else {
                return self.end(End::Truncated, at, String::from("data ends before STOP"));
            };
            let frame_end = self.frame_end;
            self.straddled.set(false);
            let step = self.step(op, at);
            if self.straddled.get() && self.ambiguous.is_none() {
                let name = opcode_name(op).unwrap_or("?");
                self.ambiguous = Some(format!("{name} at byte {at} reads across the end of its FRAME"));
            }
            match step {
                Ok(Some(next)) => {
                    self.result.ops += 1;
                    at = next;
                }
                Ok(None) => {
                    self.result.ops += 1;
                    self.result.pickles = self.result.pickles.saturating_add(1);
                    let tail = frame_end.is_some_and(|end| end > at + 1 && at + 1 < self.data.len());
                    if self.stream && tail && self.ambiguous.is_none() {
                        self.ambiguous = Some(format!("STOP at byte {at} before the end of its FRAME"));
                    }
                    self.end(End::Stop, at, String::from("STOP"));
                    return at.checked_add(1);
                }
                Err(Fail::Invalid(why)) => return self.end(End::Invalid, at, why),
                Err(Fail::Truncated) => {
                    let name = opcode_name(op).unwrap_or("?");
                    return self.end(End::Truncated, at, format!("{name} argument runs past the data"));
                }
            }
        }
    }

    fn end(&mut self, end: End, at: usize, why: String) -> Option<usize> {
        self.result.end = end;
        self.result.end_offset = at as u64;
        self.result.reason = why;
        None
    }

    /// The walk as returned: one that read across a frame's end and found nothing to report
    /// ends [`End::Ambiguous`], since another reading of the same bytes may go elsewhere (one
    /// that found imports or calls is refused for them, and reports them).
    fn finish(mut self) -> Walk {
        if let Some(why) = self.ambiguous.take() {
            if !self.result.has_effects() && self.result.end != End::OpLimit {
                self.result.end = End::Ambiguous;
                self.result.reason = why;
            }
        }
        self.result
    }

    // ---- stack model -------------------------------------------------------------------------

    /// Items above the innermost mark (CPython's `fence`).
    fn above_fence(&self) -> usize {
        self.stack.len().saturating_sub(self.marks.last().copied().unwrap_or(0))
    }

    fn need(&self, n: usize, name: &str) -> Step<()> {
        if self.above_fence() < n { invalid(format!("stack underflow at {name}")) } else { Ok(()) }
    }

    /// Pops one item above the fence (CPython's `Pdata_pop`).
    fn pop(&mut self, name: &str) -> Step<Value> {
        self.need(1, name)?;
        Ok(self.stack.pop().unwrap_or(Value::Object))
    }

    fn top(&self, name: &str) -> Step<Value> {
        self.need(1, name)?;
        Ok(self.stack.last().cloned().unwrap_or(Value::Object))
    }

    /// Removes the innermost mark and returns where it was (CPython's `marker()`); the items
    /// above it stay for the caller to look at and [`Vec::truncate`] away.
    fn pop_mark(&mut self, name: &str) -> Step<usize> {
        match self.marks.pop() {
            Some(mark) => Ok(mark),
            None => invalid(format!("{name} without a MARK")),
        }
    }

    /// Items above a mark just popped.
    fn items_above(&self, mark: usize) -> usize {
        self.stack.len().saturating_sub(mark)
    }

    fn effect(&mut self, at: usize) {
        if self.result.first_effect_offset.is_none() {
            self.result.first_effect_offset = Some(at as u64);
        }
    }

    fn cut(&self, s: &str) -> String {
        let mut end = s.len().min(self.limits.max_string);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        String::from(s.get(..end).unwrap_or(""))
    }

    fn import(&mut self, at: usize, module: &str, name: &str) {
        self.effect(at);
        let entry = (self.cut(module), self.cut(name));
        if self.result.imports.contains(&entry) {
            return;
        }
        if self.result.imports.len() < self.limits.max_imports {
            self.result.imports.push(entry);
        } else {
            self.result.more_imports = self.result.more_imports.saturating_add(1);
        }
    }

    fn call(&mut self, at: usize) {
        self.effect(at);
        self.result.calls += 1;
    }

    /// Counted, not an effect: it calls the loader's own `persistent_load` (how PyTorch files
    /// point at storages) with a value, not something the file names. Calling what it returns is
    /// an effect (`REDUCE` & co.).
    fn persistent_load(&mut self, _at: usize) -> Step<()> {
        if self.result.pickles == 0 && !self.limits.first_has_persistent_load {
            return invalid("a persistent ID with no persistent_load to call (UnpicklingError)");
        }
        self.result.persistent_loads += 1;
        self.push(Value::Object);
        Ok(())
    }

    /// A call of `callable` (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ), whose result goes on the stack.
    fn call_of(&mut self, callable: &Value, at: usize, name: &str) -> Step<()> {
        if !matches!(callable, Value::Object) {
            return invalid(format!("{name} of a value that cannot be called"));
        }
        self.call(at);
        self.push(Value::Object);
        Ok(())
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn memo_put(&mut self, key: MemoKey, value: Value) {
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            self.memo_full = true;
            return;
        }
        self.memo.insert(key, value);
    }

    fn memo_get(&mut self, key: MemoKey) -> Step<()> {
        let value = match self.memo.get(&key) {
            Some(v) => v.clone(),
            None if self.memo_full => Value::Object,
            None => return invalid("memo value not found"),
        };
        self.push(value);
        Ok(())
    }

    // ---- argument readers --------------------------------------------------------------------

    /// `len` bytes at `at` and the offset after them: one `read(len)` of the unpicklers.
    fn bytes(&self, at: usize, len: u64) -> Step<(&'a [u8], usize)> {
        // A length beyond the address space is past the end of any data we could hold.
        let len = usize::try_from(len).map_err(|_| Fail::Truncated)?;
        let end = at.checked_add(len).ok_or(Fail::Truncated)?;
        self.note_read(at, end);
        Ok((self.data.get(at..end).ok_or(Fail::Truncated)?, end))
    }

    /// Records a read of `at..end` that starts inside the current frame and ends beyond it.
    fn note_read(&self, at: usize, end: usize) {
        if self.frame_end.is_some_and(|frame_end| at < frame_end && end > frame_end && frame_end <= self.data.len()) {
            self.straddled.set(true);
        }
    }

    /// A little-endian unsigned integer of `n` (at most 8) bytes at `at`.
    fn uint(&self, at: usize, n: u64) -> Step<u64> {
        let (b, _) = self.bytes(at, n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// An 8-byte length (CPython's `calc_binsize`: more than `PY_SSIZE_T_MAX` is an error).
    fn len8(&self, at: usize, name: &str) -> Step<u64> {
        let len = self.uint(at, 8)?;
        if len > i64::MAX as u64 {
            return invalid(format!("{name} length {len} exceeds the maximum size"));
        }
        Ok(len)
    }

    /// A line argument: the bytes up to (not including) the next `\n`, and the offset after
    /// the `\n`. Where no `\n` follows: in a window, a truncation; at the end of the whole file,
    /// what the pure-Python unpickler's `readline()[:-1]` makes of the rest (the rest without its
    /// last byte, or nothing), at the end of the data.
    fn line(&self, at: usize) -> Step<(&'a [u8], usize)> {
        let rest = self.data.get(at..).ok_or(Fail::Truncated)?;
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.note_read(at, at + n + 1);
                Ok((rest.get(..n).unwrap_or_default(), at + n + 1))
            }
            None if self.limits.whole_file => {
                Ok((rest.get(..rest.len().saturating_sub(1)).unwrap_or_default(), self.data.len()))
            }
            None => Err(Fail::Truncated),
        }
    }

    /// A line argument CPython refuses when empty (`len < 2` including the newline).
    fn full_line(&self, at: usize, name: &str) -> Step<(&'a [u8], usize)> {
        let (line, next) = self.line(at)?;
        if line.is_empty() {
            return invalid(format!("{name} argument is an empty line"));
        }
        Ok((line, next))
    }

    fn string_value(&self, bytes: &[u8]) -> Value {
        let cut = bytes.get(..self.limits.max_string).unwrap_or(bytes);
        Value::Str(Rc::from(String::from_utf8_lossy(cut).as_ref()))
    }

    /// Decodes one opcode at `at`: `Ok(Some(next))`, `Ok(None)` for STOP, or why not.
    fn step(&mut self, op: u8, at: usize) -> Step<Option<usize>> {
        let Some(name) = opcode_name(op) else {
            return invalid(format!("unknown opcode 0x{op:02x}"));
        };
        // `at` indexes an opcode of `data`, so this cannot overflow.
        let arg = at + 1;
        let next = match op {
            b'.' => {
                self.need(1, name)?;
                return Ok(None);
            }
            b'(' => {
                self.marks.push(self.stack.len());
                arg
            }
            b'0' => {
                // CPython's load_pop: a mark sitting at the top of the stack is popped instead.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(name)?;
                }
                arg
            }
            b'1' => {
                let mark = self.pop_mark(name)?;
                self.stack.truncate(mark);
                arg
            }
            b'2' => {
                let top = self.top(name)?;
                self.push(top);
                arg
            }
            // Numbers as text.
            b'I' | b'L' | b'F' => {
                let (line, next) = self.full_line(arg, name)?;
                let ok = match op {
                    b'I' => int_line(line),
                    b'L' => long_line(line),
                    _ => float_line(line),
                };
                if !ok {
                    return invalid(format!("{name} argument is not a number"));
                }
                self.push(Value::Literal);
                next
            }
            b'g' | b'p' => {
                let (line, next) = self.full_line(arg, name)?;
                let Some((negative, key)) = memo_key(line) else {
                    return invalid(format!("{name} argument is not a memo index"));
                };
                if op == b'g' {
                    // A negative key is never stored: found only once the memo is untracked.
                    if negative && !self.memo_full {
                        return invalid("memo value not found");
                    }
                    self.memo_get(key)?;
                } else {
                    if negative {
                        return invalid("negative PUT argument");
                    }
                    let top = self.top(name)?;
                    self.memo_put(key, top);
                }
                next
            }
            b'S' => {
                let (line, next) = self.line(arg)?;
                let inner = match line {
                    [q @ (b'\'' | b'"'), inner @ .., last] if q == last => inner,
                    _ => return invalid("the STRING opcode argument must be quoted"),
                };
                let v = self.string_value(inner);
                self.push(v);
                next
            }
            b'V' => {
                let (line, next) = self.line(arg)?;
                let v = self.string_value(line);
                self.push(v);
                next
            }
            b'P' => {
                let (line, next) = self.line(arg)?;
                if !line.is_ascii() {
                    return invalid("persistent IDs in protocol 0 must be ASCII strings");
                }
                self.persistent_load(at)?;
                next
            }
            b'Q' => {
                self.pop(name)?;
                self.persistent_load(at)?;
                arg
            }
            b'c' | b'i' => {
                // Lines may be empty: the C unpickler refuses that, `pickle._Unpickler` calls
                // `find_class('', ...)`. The pure-Python INST imports before it looks for its
                // mark (the C one looks first): the import happens either way.
                let (module, name_at) = self.line(arg)?;
                let (global, next) = self.line(name_at)?;
                let (Ok(module), Ok(global)) = (core::str::from_utf8(module), core::str::from_utf8(global)) else {
                    return invalid(format!("{name} module or name is not UTF-8"));
                };
                self.import(at, module, global);
                if op == b'i' {
                    let mark = self.pop_mark(name)?;
                    self.stack.truncate(mark);
                    self.call(at);
                }
                self.push(Value::Object);
                next
            }
            // Fixed-size arguments.
            b'K' | b'M' | b'J' | b'G' => {
                let n = match op {
                    b'K' => 1,
                    b'M' => 2,
                    b'J' => 4,
                    _ => 8,
                };
                let (_, next) = self.bytes(arg, n)?;
                self.push(Value::Literal);
                next
            }
            b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => {
                self.push(Value::Literal);
                arg
            }
            0x80 => {
                let proto = self.uint(arg, 1)?;
                let Ok(proto @ 0..=5) = u8::try_from(proto) else {
                    return invalid(format!("unsupported pickle protocol: {proto}"));
                };
                self.result.protocol = Some(self.result.protocol.map_or(proto, |p| p.max(proto)));
                arg + 1
            }
            0x95 => {
                // The C unpickler reads the whole frame before it goes on with the frame's first
                // opcode; `pickle._Unpickler` reads a frame longer than the rest of the file
                // short, silently, and runs what it got. Either way the frame's opcodes follow.
                let len = self.len8(arg, name)?;
                let body = arg + 8;
                self.frame_end = Some(usize::try_from(len).map_or(usize::MAX, |len| body.saturating_add(len)));
                body
            }
            // Length-prefixed strings and bytes. 4-byte lengths are unsigned (`calc_binsize`).
            b'T' | b'X' | b'B' => {
                let len = self.uint(arg, 4)?;
                self.counted(op, arg + 4, len)?
            }
            b'U' | b'C' | 0x8c => {
                let len = self.uint(arg, 1)?;
                self.counted(op, arg + 1, len)?
            }
            0x8d | 0x8e | 0x96 => {
                let len = self.len8(arg, name)?;
                self.counted(op, arg + 8, len)?
            }
            0x8a => {
                let len = self.uint(arg, 1)?;
                self.counted(op, arg + 1, len)?
            }
            0x8b => {
                // LONG4's length is signed (`calc_binint`).
                let len = self.uint(arg, 4)?;
                if len > i32::MAX as u64 {
                    return invalid("LONG pickle has negative byte count");
                }
                self.counted(op, arg + 4, len)?
            }
            // Memo.
            b'h' | b'j' => {
                let n = if op == b'h' { 1 } else { 4 };
                let key = self.uint(arg, n)?;
                self.memo_get(MemoKey::Int(key))?;
                arg + n as usize
            }
            b'q' | b'r' => {
                let n = if op == b'q' { 1 } else { 4 };
                let key = self.uint(arg, n)?;
                let top = self.top(name)?;
                self.memo_put(MemoKey::Int(key), top);
                arg + n as usize
            }
            0x94 => {
                let top = self.top(name)?;
                // CPython's memo_len: the number of keys stored.
                let key = self.memo.len() as u64;
                self.memo_put(MemoKey::Int(key), top);
                arg
            }
            // Containers. APPEND and SETITEM leave the container (whatever it is) on the stack.
            b'a' => {
                self.need(2, name)?;
                self.pop(name)?;
                arg
            }
            b's' => {
                self.need(3, name)?;
                self.pop(name)?;
                self.pop(name)?;
                arg
            }
            b'e' | b'u' | 0x90 => {
                let mark = self.pop_mark(name)?;
                // The container sits below the mark (CPython: `x <= 0` is an underflow), even
                // below an outer mark.
                if mark == 0 {
                    return invalid(format!("stack underflow at {name}"));
                }
                if op == b'u' && !self.items_above(mark).is_multiple_of(2) {
                    return invalid("odd number of items for SETITEMS");
                }
                self.stack.truncate(mark);
                arg
            }
            b't' | b'l' | 0x91 | b'd' => {
                let mark = self.pop_mark(name)?;
                if op == b'd' && !self.items_above(mark).is_multiple_of(2) {
                    return invalid("odd number of items for DICT");
                }
                self.stack.truncate(mark);
                self.push(Value::Literal);
                arg
            }
            0x85..=0x87 => {
                self.need(usize::from(op - 0x84), name)?;
                let keep = self.stack.len() - usize::from(op - 0x84);
                self.stack.truncate(keep);
                self.push(Value::Literal);
                arg
            }
            // Imports and calls.
            0x93 => {
                let global = self.pop(name)?;
                let module = self.pop(name)?;
                let part = |v: &Value| match v {
                    Value::Str(s) => Some(s.clone()),
                    Value::Object => Some(Rc::from("?")),
                    Value::Literal => None,
                };
                let (Some(module), Some(global)) = (part(&module), part(&global)) else {
                    return invalid("STACK_GLOBAL requires str");
                };
                self.import(at, &module, &global);
                self.push(Value::Object);
                arg
            }
            0x82..=0x84 => {
                let n = match op {
                    0x82 => 1,
                    0x83 => 2,
                    _ => 4,
                };
                let code = self.uint(arg, n)?;
                // EXT4's code is signed; 0 is forbidden.
                if code == 0 || code > i32::MAX as u64 {
                    return invalid("EXT specifies code <= 0");
                }
                // The registry (`copyreg.add_extension`) is empty in every standard Python and
                // no ML loader fills it, so CPython rejects every code as unregistered. The one
                // deliberate step away from the superset: counting these as imports would flag 1
                // in 8192 safetensors header lengths for an import that cannot happen.
                let _ = at;
                return invalid(format!("unregistered extension code {code}"));
            }
            b'R' | 0x81 => {
                self.pop(name)?;
                let callable = self.pop(name)?;
                self.call_of(&callable, at, name)?;
                arg
            }
            0x92 => {
                self.pop(name)?;
                self.pop(name)?;
                let cls = self.pop(name)?;
                self.call_of(&cls, at, name)?;
                arg
            }
            b'o' => {
                let mark = self.pop_mark(name)?;
                let Some(cls) = self.stack.get(mark).cloned() else {
                    return invalid(format!("stack underflow at {name}"));
                };
                self.stack.truncate(mark);
                self.call_of(&cls, at, name)?;
                arg
            }
            b'b' => {
                self.need(2, name)?;
                self.pop(name)?;
                // Only an object can have a `__setstate__`; on a value the file built, CPython
                // at most sets attributes, or fails, running nothing.
                if matches!(self.stack.last(), Some(Value::Object)) {
                    self.call(at);
                }
                arg
            }
            0x97 => {
                // Out-of-band data from the caller's `buffers` (a PickleBuffer, bytes-like):
                // data, never something to call.
                self.push(Value::Literal);
                arg
            }
            0x98 => {
                self.need(1, name)?;
                arg
            }
            _ => return invalid(format!("unknown opcode 0x{op:02x}")),
        };
        Ok(Some(next))
    }

    /// A string, bytes or long argument of `len` bytes at `at`; returns the offset after it.
    fn counted(&mut self, op: u8, at: usize, len: u64) -> Step<usize> {
        let (bytes, next) = self.bytes(at, len)?;
        let value = match op {
            // Unicode: UTF-8 with surrogates allowed ('surrogatepass').
            b'X' | 0x8c | 0x8d => {
                if !is_utf8_surrogatepass(bytes) {
                    return invalid("BINUNICODE argument is not UTF-8");
                }
                self.string_value(bytes)
            }
            // py2 str, decoded with the unpickler's encoding (str unless it is 'bytes').
            b'T' | b'U' => self.string_value(bytes),
            _ => Value::Literal,
        };
        self.push(value);
        Ok(next)
    }
}

/// What CPython's C-string parsers see of a line: the bytes before the first NUL.
fn c_string(line: &[u8]) -> &[u8] {
    line.split(|&b| b == 0).next().unwrap_or_default()
}

/// Python's (and C's) whitespace: what `strtol` and `PyLong_FromString` skip.
fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// An integer as `strtol(s, 0)` or `PyLong_FromString(s, 0)` reads it (superset): whitespace,
/// a sign, then a digit followed by alphanumerics and underscores (`0x1F`, `017`, `1_000`).
fn int_literal(s: &[u8]) -> bool {
    let s = trim(s);
    let s = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")).unwrap_or(s);
    matches!(s.first(), Some(b'0'..=b'9')) && s.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// INT's line (`load_int`): `strtol`, then `PyLong_FromString`, both stopping at a NUL; a line
/// that starts with NUL is 0.
fn int_line(line: &[u8]) -> bool {
    line.first() == Some(&0) || int_literal(c_string(line))
}

/// LONG's line (`load_long`): one trailing `L` dropped, then `PyLong_FromString`.
fn long_line(line: &[u8]) -> bool {
    int_literal(c_string(line.strip_suffix(b"L").unwrap_or(line)))
}

/// FLOAT's line, as either unpickler reads it (superset): the C one's `PyOS_string_to_double`
/// up to a NUL, no whitespace (digits, sign, point, exponent, the letters of inf, infinity and
/// nan), or the pure-Python one's `float(line)`, which also takes ASCII whitespace around the
/// number and `_` between digits, but no NUL.
fn float_line(line: &[u8]) -> bool {
    let shape = |s: &[u8], underscores: bool| {
        s.iter().all(|&b| b.is_ascii_digit() || b"+-.eEinftyaINFTYA".contains(&b) || (underscores && b == b'_'))
            && s.iter().any(|b| b.is_ascii_digit() || b"nN".contains(b))
    };
    shape(c_string(line), false) || (!line.contains(&0) && shape(trim(line), true))
}

/// GET's and PUT's line as either unpickler reads it (superset): `PyLong_FromString(s, 10)` up to
/// a NUL (then `PyLong_AsSsize_t`), or Python's `int(line)` of any size. Whitespace around, a
/// sign, digits with underscores between them. Returns whether the key is negative (`-0` is not)
/// and the key; `None` when neither unpickler reads a number.
fn memo_key(line: &[u8]) -> Option<(bool, MemoKey)> {
    let s = trim(c_string(line));
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'0'..=b'9')) || !digits.iter().all(|&b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let canonical: Vec<u8> = digits.iter().copied().filter(|&b| b != b'_').skip_while(|&b| b == b'0').collect();
    let mut small = Some(0u64);
    for &b in &canonical {
        small = small.and_then(|k| k.checked_mul(10)?.checked_add(u64::from(b - b'0')));
    }
    let key = match small {
        Some(k) => MemoKey::Int(k),
        None => {
            let len = canonical.len();
            MemoKey::Big(Rc::from(canonical.get(..MAX_KEY_DIGITS).unwrap_or(&canonical)), len)
        }
    };
    Some((negative && canonical.iter().any(|&b| b != b'0'), key))
}

/// UTF-8, also accepting encoded surrogates (U+D800..U+DFFF), as Python's 'surrogatepass'.
fn is_utf8_surrogatepass(mut bytes: &[u8]) -> bool {
    loop {
        match core::str::from_utf8(bytes) {
            Ok(_) => return true,
            Err(e) => {
                let rest = bytes.get(e.valid_up_to()..).unwrap_or_default();
                // An encoded surrogate: ED A0..BF 80..BF.
                match rest {
                    [0xED, 0xA0..=0xBF, 0x80..=0xBF, tail @ ..] => bytes = tail,
                    _ => return false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn w(data: &[u8]) -> Walk {
        walk(data, &WalkLimits::default())
    }

    fn end(data: &[u8]) -> End {
        w(data).end
    }

    fn imports(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|&(m, n)| (m.into(), n.into())).collect()
    }

    #[test]
    fn classic_malicious_pickle() {
        let r = w(b"cos\nsystem\n(S'echo hi'\ntR.");
        assert_eq!(r.end, End::Stop);
        assert_eq!(r.imports, imports(&[("os", "system")]));
        assert_eq!((r.calls, r.first_effect_offset, r.ops, r.end_offset), (1, Some(0), 6, 25));
    }

    #[test]
    fn every_known_opcode_has_a_name() {
        let known = (0..=255u8).filter(|&b| opcode_name(b).is_some()).count();
        assert_eq!(known, 68);
        for b in (0..=255u8).filter(|&b| opcode_name(b).is_none()) {
            let r = w(&[b, b'.']);
            assert_eq!((r.end, r.reason), (End::Invalid, format!("unknown opcode 0x{b:02x}")));
        }
    }

    #[test]
    fn stack_global_through_the_memo() {
        // Protocol 4: "os" memoized, "system", STACK_GLOBAL; then "os" again through BINGET.
        let data = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94h\x00\x8c\x04path\x94\x93\x94.";
        let r = w(data);
        assert_eq!(r.end, End::Stop, "{r:?}");
        assert_eq!(r.protocol, Some(4));
        assert_eq!(r.imports, imports(&[("os", "system"), ("os", "path")]));
        assert_eq!(r.first_effect_offset, Some(25));
        // Through BINPUT/BINGET and LONG_BINPUT/LONG_BINGET, and PUT/GET as text.
        let r = w(b"X\x02\x00\x00\x00osq\x07Vsystem\nr\x01\x00\x00\x00\x93h\x07j\x01\x00\x00\x00\x93p3\ng3\n0.");
        assert_eq!(r.imports, imports(&[("os", "system")]), "{r:?}");
        assert_eq!(r.end, End::Stop);
        // A module that an import produced is reported as "?"; a number is refused.
        assert_eq!(w(b"cm\nf\n)R\x8c\x01x\x93.").imports, imports(&[("m", "f"), ("?", "x")]));
        assert_eq!(end(b"K\x01\x8c\x01x\x93."), End::Invalid);
        assert_eq!(end(b"\x8c\x01x\x93."), End::Invalid);
    }

    #[test]
    fn fence_semantics() {
        // MARK then POP: pops the mark (load_pop); STOP then underflows on the empty stack.
        assert_eq!(end(b"N(0."), End::Stop);
        assert_eq!(end(b"(0."), End::Invalid);
        assert_eq!(end(b"N(N00."), End::Stop);
        // STOP with a mark above everything: the fence hides the stack.
        assert_eq!(end(b"N(."), End::Invalid);
        // Nothing pops below the innermost mark.
        let r = w(b"cm\nf\n)(R.");
        assert_eq!((r.end, r.reason.as_str()), (End::Invalid, "stack underflow at REDUCE"));
        for op in [b'a', b'b', b'2', b'q', b'Q', b'0'] {
            assert_eq!(end(&[b']', b'N', b'(', op, 0, b'.']), End::Invalid, "{}", op as char);
        }
        assert_eq!(end(b"}NN(s."), End::Invalid);
        assert_eq!(end(b"}N(Ns."), End::Invalid);
        assert_eq!(end(b"N(\x85."), End::Invalid);
        assert_eq!(end(b"N(N\x86."), End::Invalid);
        assert_eq!(end(b"NN(N\x87."), End::Invalid);
        assert_eq!(end(b"X\x01\x00\x00\x00a(X\x01\x00\x00\x00b\x93."), End::Invalid);
        // Mark ops pop the mark; after it the outer fence applies again.
        assert_eq!(end(b"N(N(t\x87."), End::Invalid);
        assert_eq!(end(b"N(N(t\x86."), End::Stop);
        assert_eq!(end(b"N((Nt\x86."), End::Invalid);
        assert_eq!(end(b"N(Nt\x86."), End::Stop);
        assert_eq!(end(b"(NNNN1N."), End::Stop);
        // APPENDS & co. need the container below the mark, which may be below an outer mark.
        assert_eq!(end(b"(K\x01e."), End::Invalid);
        assert_eq!(end(b"](K\x01e."), End::Stop);
        assert_eq!(end(b"]((K\x01e1."), End::Stop);
        assert_eq!(end(b"\x8f(\x90."), End::Stop);
        assert_eq!(end(b"(\x90."), End::Invalid);
        assert_eq!(end(b"}(K\x01K\x02u."), End::Stop);
        assert_eq!(end(b"}(K\x01u."), End::Invalid);
        assert_eq!(end(b"(K\x01K\x02K\x03d."), End::Invalid);
        assert_eq!(end(b"(K\x01K\x02d."), End::Stop);
        // Mark ops without a mark.
        for op in [b't', b'l', b'd', b'e', b'u', b'1', b'o', 0x91, 0x90] {
            assert_eq!(end(&[b'N', op, b'.']), End::Invalid, "{op:#x}");
        }
        // The pure-Python INST imports before it looks for its mark: an import, then invalid.
        let r = w(b"im\nf\n.");
        assert_eq!((r.end, r.imports.clone()), (End::Invalid, imports(&[("m", "f")])), "{r:?}");
        assert!(r.has_effects());
        assert_eq!(end(b"im\n"), End::Truncated);
        assert_eq!(end(b"(im\n"), End::Truncated);
        // OBJ needs the class after the mark.
        assert_eq!(end(b"cm\nf\n(o."), End::Invalid);
        assert_eq!(w(b"(cm\nf\nK\x01o.").calls, 1);
    }

    #[test]
    fn underflows_on_an_empty_stack() {
        let pops: &[(&[u8], &str)] = &[
            (b".", "STOP"),
            (b"0", "POP"),
            (b"2", "DUP"),
            (b"a", "APPEND"),
            (b"s", "SETITEM"),
            (b"R", "REDUCE"),
            (b"b", "BUILD"),
            (b"\x81", "NEWOBJ"),
            (b"\x92", "NEWOBJ_EX"),
            (b"\x85", "TUPLE1"),
            (b"\x86", "TUPLE2"),
            (b"\x87", "TUPLE3"),
            (b"q\x00", "BINPUT"),
            (b"r\x00\x00\x00\x00", "LONG_BINPUT"),
            (b"p0\n", "PUT"),
            (b"\x94", "MEMOIZE"),
            (b"Q", "BINPERSID"),
            (b"\x98", "READONLY_BUFFER"),
            (b"\x93", "STACK_GLOBAL"),
        ];
        for &(op, name) in pops {
            let mut d = op.to_vec();
            d.push(b'.');
            let r = w(&d);
            assert_eq!((r.end, r.reason), (End::Invalid, format!("stack underflow at {name}")));
            // One item short still underflows where two are needed.
            let mut d = b"N".to_vec();
            d.extend_from_slice(op);
            d.push(b'.');
            let need_two = ["APPEND", "SETITEM", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "TUPLE2", "TUPLE3"];
            if need_two.contains(&name) || name == "STACK_GLOBAL" {
                assert_eq!(end(&d), End::Invalid, "{name}");
            }
        }
        assert_eq!(end(b"NN\x87."), End::Invalid);
        assert_eq!(end(b"N}s."), End::Invalid);
        assert_eq!(end(b"NN}s."), End::Stop);
        assert_eq!(end(b"NNN\x87."), End::Stop);
    }

    #[test]
    fn truncated_versus_invalid() {
        assert_eq!(end(b""), End::Truncated);
        assert_eq!(end(b"N"), End::Truncated);
        let r = w(b"I12");
        assert_eq!((r.end, r.end_offset, r.reason.as_str()), (End::Truncated, 0, "INT argument runs past the data"));
        assert_eq!(end(b"Iabc\n."), End::Invalid);
        assert_eq!(end(b"X\x10\x00\x00\x00abc"), End::Truncated);
        assert_eq!(end(b"\x80\x06."), End::Invalid);
        assert_eq!(end(b"\x80\x05N."), End::Stop);
        assert_eq!(end(b"\x80"), End::Truncated);
        // A frame longer than the data: `_Unframer` reads it short and runs what it holds.
        assert_eq!(end(b"\x95\x00\x01\x00\x00\x00\x00\x00\x00N."), End::Stop);
        assert_eq!(w(b"\x95\x00\x01\x00\x00\x00\x00\x00\x00cos\nsystem\n.").imports, imports(&[("os", "system")]));
        assert_eq!(end(b"\x95\x02\x00\x00\x00\x00\x00\x00\x00N."), End::Stop);
        assert_eq!(end(b"\x95\x02\x00\x00"), End::Truncated);
        // BINSTRING's 4-byte length is unsigned in the C unpickler: a huge one is a truncation.
        assert_eq!(end(b"T\xff\xff\xff\xff"), End::Truncated);
        assert_eq!(end(b"\x8b\xff\xff\xff\xff"), End::Invalid);
        assert_eq!(end(b"\x8b\x02\x00\x00\x00\xff\x7f."), End::Stop);
        assert_eq!(end(b"\x8a\x02\xff"), End::Truncated);
        assert_eq!(end(b"J\x01\x02"), End::Truncated);
        // 8-byte lengths near u64::MAX never overflow; beyond i64::MAX CPython refuses them.
        for op in [0x8du8, 0x8e, 0x96, 0x95] {
            for len in [u64::MAX, u64::MAX - 1, 1 << 63, i64::MAX as u64, (i64::MAX - 8) as u64, u64::from(u32::MAX)] {
                let mut d = vec![op];
                d.extend_from_slice(&len.to_le_bytes());
                d.extend_from_slice(b"abc.");
                // A frame's opcodes follow it however long it says it is: `a` underflows.
                let expected = if len > i64::MAX as u64 || op == 0x95 { End::Invalid } else { End::Truncated };
                assert_eq!(end(&d), expected, "{op:#x} {len}");
            }
        }
        for op in [b'T', b'X', b'B', 0x8b] {
            let mut d = vec![op];
            d.extend_from_slice(&0x7fff_fff0u32.to_le_bytes());
            assert_eq!(end(&d), End::Truncated);
        }
    }

    #[test]
    fn text_arguments_follow_cpython() {
        // STRING: quoted with the same quote at both ends, at least two characters.
        assert_eq!(end(b"S'abc'\n."), End::Stop);
        assert_eq!(end(b"S\"\"\n."), End::Stop);
        assert_eq!(end(b"S'\n."), End::Invalid);
        assert_eq!(end(b"S'abc\"\n."), End::Invalid);
        assert_eq!(end(b"Sabc\n."), End::Invalid);
        assert_eq!(end(b"S'abc'"), End::Truncated);
        // UNICODE: anything up to the newline.
        assert_eq!(end(b"V\xff\x00\n."), End::Stop);
        assert_eq!(end(b"V\n."), End::Stop);
        // PERSID: ASCII, may be empty.
        assert_eq!(end(b"P\xff\n."), End::Invalid);
        assert_eq!(end(b"P\n."), End::Stop);
        // INT: strtol or PyLong_FromString, up to a NUL.
        for ok in [&b"I01\n."[..], b"I00\n.", b"I-5\n.", b"I 12\n.", b"I0x1F\n.", b"I017\n.", b"I1_000\n."] {
            assert_eq!(end(ok), End::Stop, "{ok:?}");
        }
        for ok in [&b"I\x00\n."[..], b"I\x00xyz\n.", b"I12\x00junk\n.", b"I-0b1\n."] {
            assert_eq!(end(ok), End::Stop, "{ok:?}");
        }
        for bad in [&b"I\n."[..], b"I-\n.", b"Ix\n.", b"I \n.", b"I1.5\n.", b"I\xff\n."] {
            assert_eq!(end(bad), End::Invalid, "{bad:?}");
        }
        // LONG: one trailing L allowed.
        assert_eq!(end(b"L123L\n."), End::Stop);
        assert_eq!(end(b"L123\n."), End::Stop);
        assert_eq!(end(b"L0x10\n."), End::Stop);
        assert_eq!(end(b"LL\n."), End::Invalid);
        assert_eq!(end(b"L\x00\n."), End::Invalid);
        assert_eq!(end(b"L\n."), End::Invalid);
        // FLOAT: C's syntax up to a NUL, or Python's float() with whitespace and underscores.
        for ok in [&b"F1.5e3\n."[..], b"F-inf\n.", b"Fnan\n.", b"F1.5\x00zz\n.", b"F2\n.", b"FInfinity\n."] {
            assert_eq!(end(ok), End::Stop, "{ok:?}");
        }
        for ok in [&b"F 1.5\n."[..], b"F1_0\n.", b"F\t-1_0.5e1_0\x0b\n.", b"F  infinity \n."] {
            assert_eq!(end(ok), End::Stop, "{ok:?}");
        }
        for bad in [&b"F.\n."[..], b"F\x00\n.", b"F\n.", b"Fx\n.", b"F \x001\n.", b"F\x1c1\n."] {
            assert_eq!(end(bad), End::Invalid, "{bad:?}");
        }
        // GLOBAL and INST: two UTF-8 lines, which pickle._Unpickler takes empty too.
        assert_eq!(end(b"c\xff\nx\nN."), End::Invalid);
        assert_eq!(w(b"c\nx\n.").imports, imports(&[("", "x")]));
        assert_eq!(w(b"cx\n\n.").imports, imports(&[("x", "")]));
        assert_eq!(end(b"cx\ny"), End::Truncated);
        // At the end of the whole file, pickle._Unpickler's readline()[:-1] cuts the last byte.
        let eof = WalkLimits { whole_file: true, ..WalkLimits::default() };
        let r = walk(b"cantigravityX", &eof);
        assert_eq!((r.end, r.imports), (End::Truncated, imports(&[("antigravity", "")])));
        assert_eq!(walk(b"cos\nsystemX", &eof).imports, imports(&[("os", "system")]));
        assert_eq!(walk(b"c", &eof).imports, imports(&[("", "")]));
        assert_eq!(walk(b"ios\nsystem", &eof).imports, imports(&[("os", "syste")]));
        assert_eq!(walk(b"I12", &eof).end, End::Truncated);
        assert_eq!(w(b"c\xc3\xa9\nx\n.").imports, imports(&[("\u{e9}", "x")]));
        // Unicode arguments: UTF-8 with surrogates.
        assert_eq!(end(b"X\x03\x00\x00\x00\xed\xa0\x80."), End::Stop);
        assert_eq!(end(b"X\x01\x00\x00\x00\xff."), End::Invalid);
        assert_eq!(end(b"\x8c\x02\xc3\x28."), End::Invalid);
        assert_eq!(end(b"\x8c\x03\xed\x80\x80."), End::Stop);
        assert_eq!(end(b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00\xed\xa0."), End::Invalid);
        // Bytes are not checked.
        assert_eq!(end(b"C\x01\xff."), End::Stop);
        assert_eq!(end(b"U\x01\xff."), End::Stop);
    }

    #[test]
    fn a_first_pickle_without_persistent_load() {
        let none = WalkLimits { first_has_persistent_load: false, ..WalkLimits::default() };
        // A PERSID line running into what follows: refused by the unpickler itself.
        assert_eq!(walk(b"Pabc\ncos\nsystem\n.", &none).end, End::Invalid);
        assert_eq!(walk(b"Pabc\ncos\nsystem\n.", &WalkLimits::default()).imports, imports(&[("os", "system")]));
        assert_eq!(walk(b"K\x01Q.", &none).end, End::Invalid);
        // Later pickles of a stream (torch's legacy fourth load) may have one.
        let r = walk_stream(b"K\x01.Pid\ncos\nsystem\n.", &none);
        assert_eq!((r.persistent_loads, r.imports), (1, imports(&[("os", "system")])));
    }

    #[test]
    fn frames_read_one_way_only() {
        // Whole frames, as pickle.dump writes them: one reading.
        assert_eq!(end(b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N."), End::Stop);
        assert_eq!(end(b"\x95\x01\x00\x00\x00\x00\x00\x00\x00N\x95\x01\x00\x00\x00\x00\x00\x00\x00."), End::Stop);
        // One read across the frame's end: old C reading a file may drop the frame's rest.
        let r = w(b"\x95\x02\x00\x00\x00\x00\x00\x00\x00I1\n2\n.");
        assert_eq!((r.end, r.reason.as_str()), (End::Ambiguous, "INT at byte 9 reads across the end of its FRAME"));
        // What it finds after that is still reported.
        let r = w(b"\x95\x02\x00\x00\x00\x00\x00\x00\x00I1\ncos\nsystem\n.");
        assert_eq!((r.end, r.imports), (End::Stop, imports(&[("os", "system")])));
        assert_eq!(end(b"\x95\x03\x00\x00\x00\x00\x00\x00\x00\x8c\x03abc."), End::Ambiguous);
        // Reads that start exactly at the frame's end are reads of what follows: one reading.
        assert_eq!(end(b"\x95\x02\x00\x00\x00\x00\x00\x00\x00\x8c\x03abc."), End::Stop);
        // A STOP inside its frame with more of the frame after it: fine for one load, ambiguous
        // for the next load of a stream.
        let data = b"\x95\x04\x00\x00\x00\x00\x00\x00\x00N.N.";
        assert_eq!(walk(data, &WalkLimits::default()).end, End::Stop);
        assert_eq!(walk_stream(data, &WalkLimits::default()).end, End::Ambiguous);
        // A frame longer than the data (short at the end of the file) is not a straddle.
        assert_eq!(end(b"\x95\x00\x01\x00\x00\x00\x00\x00\x00N."), End::Stop);
    }

    #[test]
    fn memo_rules() {
        assert_eq!(end(b"h\x00."), End::Invalid);
        assert_eq!(end(b"j\x00\x00\x00\x00."), End::Invalid);
        assert_eq!(end(b"g0\n."), End::Invalid);
        assert_eq!(end(b"Np1\ng1\n."), End::Stop);
        assert_eq!(end(b"Np1_0\ng10\n."), End::Stop);
        assert_eq!(end(b"Np 3 \ng3\n."), End::Stop);
        assert_eq!(end(b"Np+1\ng1\n."), End::Stop);
        assert_eq!(end(b"Np1\x00zz\ng1\n."), End::Stop);
        assert_eq!(end(b"Np-1\n."), End::Invalid);
        assert_eq!(end(b"Np-0\ng0\n."), End::Stop);
        assert_eq!(end(b"Np0x1\n."), End::Invalid);
        // Keys beyond 64 bits: Python ints, told apart by their digits.
        assert_eq!(end(b"Np99999999999999999999\n."), End::Stop);
        assert_eq!(end(b"Np99999999999999999999\ng99_999_999_999_999_999_999\n."), End::Stop);
        assert_eq!(end(b"Np99999999999999999999\ng99999999999999999998\n."), End::Invalid);
        assert_eq!(end(b"Np18446744073709551616\ng0018446744073709551616\n."), End::Stop);
        assert_eq!(end(b"Np18446744073709551615\ng18446744073709551615\n."), End::Stop);
        assert_eq!(end(b"Np1\ng-1\n."), End::Invalid);
        assert_eq!(end(b"Np1__0\n."), End::Stop);
        assert_eq!(end(b"Np\n."), End::Invalid);
        // MEMOIZE uses the number of keys stored.
        assert_eq!(end(b"N\x94N\x94h\x01."), End::Stop);
        assert_eq!(end(b"Nq\x05\x94h\x01."), End::Stop);
        assert_eq!(end(b"N\x94h\x01."), End::Invalid);
        // A full memo makes every lookup succeed.
        let limits = WalkLimits { max_memo: 1, ..WalkLimits::default() };
        assert_eq!(walk(b"Nq\x00h\x09.", &limits).end, End::Invalid);
        assert_eq!(walk(b"Nq\x00q\x01h\x09.", &limits).end, End::Stop);
        // An untracked value may be a str for STACK_GLOBAL.
        assert_eq!(walk(b"Nq\x00q\x01h\x09h\x08\x93.", &limits).imports, imports(&[("?", "?")]));
    }

    #[test]
    fn calls_and_effects() {
        // REDUCE, NEWOBJ, NEWOBJ_EX, OBJ of something the file built: TypeError, nothing runs.
        assert_eq!(end(b"C\x01x)R."), End::Invalid);
        assert_eq!(end(b"N)\x81."), End::Invalid);
        assert_eq!(end(b"N)}\x92."), End::Invalid);
        assert_eq!(end(b"(C\x01xo."), End::Invalid);
        // BUILD of a value the file built runs nothing (CPython returns [] for `]Nb.`).
        let r = w(b"]Nb.");
        assert_eq!((r.end, r.calls, r.has_effects()), (End::Stop, 0, false));
        let r = w(b"cm\nC\n)\x81}b.");
        assert_eq!((r.end, r.calls), (End::Stop, 2));
        let r = w(b"cm\nC\n)}\x92.");
        assert_eq!((r.end, r.calls), (End::Stop, 1));
        let r = w(b"(im\nC\nK\x01K\x02.");
        assert_eq!((r.end, r.calls, r.imports.len()), (End::Stop, 1, 1));
        // Persistent loads are counted, not effects; what they return can be called (an effect).
        let r = w(b"Pid\n)R.");
        assert_eq!((r.end, r.calls, r.persistent_loads, r.first_effect_offset), (End::Stop, 1, 1, Some(5)));
        let r = w(b"K\x01Q.");
        assert_eq!((r.persistent_loads, r.first_effect_offset), (1, None));
        // A buffer from the caller is data: calling it fails.
        assert_eq!(end(b"\x97)R."), End::Invalid);
        assert_eq!(end(b"\x97\x98."), End::Stop);
        // Extensions: CPython's registry is empty, so every code is unregistered.
        assert_eq!(end(b"\x82\x07."), End::Invalid);
        assert_eq!(end(b"\x82\x00."), End::Invalid);
        assert_eq!(end(b"\x83\x00\x00."), End::Invalid);
        assert_eq!(end(b"\x84\xff\xff\xff\xff."), End::Invalid);
        assert_eq!(end(b"\x84\xff\xff\xff\x7f."), End::Invalid);
        // No effects in a plain data pickle.
        assert!(!w(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eu.").has_effects());
    }

    #[test]
    fn imports_are_deduplicated_and_bounded() {
        let limits = WalkLimits { max_imports: 2, max_string: 3, ..WalkLimits::default() };
        let r = walk(b"ca\nb\nca\nb\ncabcdef\nx\ncz\nz\ncy\ny\ncz\nz\n.", &limits);
        assert_eq!(r.imports, imports(&[("a", "b"), ("abc", "x")]));
        assert_eq!(r.more_imports, 3);
    }

    #[test]
    fn streams_continue_after_stop() {
        let data = b"K\x01.cos\nsystem\n(S'x'\ntR.";
        let r = w(data);
        assert_eq!((r.end, r.end_offset, r.imports), (End::Stop, 2, vec![]));
        let r = walk_stream(data, &WalkLimits::default());
        assert_eq!((r.end, r.pickles, r.end_offset), (End::Stop, 2, 22));
        assert_eq!(r.imports, imports(&[("os", "system")]));
        assert_eq!(r.first_effect_offset, Some(3));
        // A fresh unpickler: the memo and the marks do not carry over.
        assert_eq!(walk_stream(b"Nq\x00.h\x00.", &WalkLimits::default()).end, End::Invalid);
        assert_eq!(walk_stream(b"N(N.0.", &WalkLimits::default()).end, End::Invalid);
        let r = walk_stream(b"K\x01.\x00", &WalkLimits::default());
        assert_eq!((r.end, r.pickles, r.end_offset), (End::Invalid, 1, 3));
        let r = walk_stream(b"K\x01.K", &WalkLimits::default());
        assert_eq!((r.end, r.pickles, r.end_offset), (End::Truncated, 1, 3));
        assert_eq!(walk_stream(b"", &WalkLimits::default()).end, End::Truncated);
        // The opcode budget covers the whole stream.
        let r = walk_stream(b"N.N.N.", &WalkLimits { max_ops: 5, ..WalkLimits::default() });
        assert_eq!((r.end, r.pickles, r.ops, r.end_offset), (End::OpLimit, 2, 5, 5));
    }

    #[test]
    fn op_limit() {
        let data = vec![b'N'; 100];
        let r = walk(&data, &WalkLimits { max_ops: 10, ..WalkLimits::default() });
        assert_eq!((r.end, r.ops, r.end_offset), (End::OpLimit, 10, 10));
    }

    #[test]
    fn dup_of_a_long_string_shares_it() {
        // 200,000 DUPs of a 256-byte string: a walk, not 51 MB of copies.
        let mut d = b"X\x00\x01\x00\x00".to_vec();
        d.extend_from_slice(&[b'a'; 256]);
        d.extend_from_slice(&[b'2'; 200_000]);
        d.push(b'.');
        assert_eq!(end(&d), End::Stop);
    }

    #[test]
    fn safetensors_prefixes_die_in_the_prefix() {
        // Every header length a writer produces (multiples of 8) followed by '{"': the walk never
        // gets to an import or a call. (Checked once for all 12.5 million lengths below 100 MB;
        // the first MiB here.)
        for n in (8u64..1 << 20).step_by(8) {
            let mut d = n.to_le_bytes().to_vec();
            d.extend_from_slice(b"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
            let r = walk_stream(&d, &WalkLimits::default());
            assert!(!r.has_effects() && r.end != End::Stop, "{n}: {r:?}");
        }
    }

    #[test]
    fn walks_cross_the_boundary() {
        let r = w(b"cos\nsystem\n(S'echo hi'\ntR.");
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<Walk>(&bytes).unwrap(), r);
    }
}
