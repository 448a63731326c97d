//! A symbolic walk of Python pickle opcodes: what `pickle.load` (CPython's `_pickle` Unpickler,
//! protocols 0-5) would do with some bytes, without doing any of it.
//!
//! The walker decodes each opcode and its argument, and tracks what decides whether CPython goes
//! on: the stack depth, the mark stack with CPython's *fence* (no opcode pops below the innermost
//! mark), the memo keys, and the strings on the stack (so that `STACK_GLOBAL`'s module and name can
//! be reported). It never builds an object, imports a module or calls anything.
//!
//! It accepts a *superset* of what CPython accepts, so whatever CPython would execute the walker
//! walks (and reports), while it fails where CPython certainly fails — lines without a newline,
//! numbers that do not parse, an unknown opcode, a stack underflow, a missing memo entry — so that
//! bytes that are not a pickle stop within a few opcodes. Approximations, all towards walking on:
//! string contents are not escape-decoded, `V` lines are not checked, types on the stack are not
//! tracked (`APPEND` onto a string walks on), and once the memo or the string store is full,
//! lookups succeed. One step the other way: `EXT1/2/4` are rejected, as CPython does with an empty
//! extension registry (which no standard Python or ML loader fills).
//!
//! Used by the `safetensors-header` guest (is a checkpoint also a pickle from byte 0?), by the
//! `pickle-scan` guest (what would a refused pickle import and call?) and by the host's sniffer
//! (is this a pickle?, on a bounded window).
//!
//! ```
//! use sandload_abi::pickle::{End, WalkLimits, walk};
//! let w = walk(b"cos\nsystem\n(S'echo hi'\ntR.", &WalkLimits::default());
//! assert_eq!(w.end, End::Stop);
//! assert_eq!(w.imports, vec![("os".into(), "system".into())]);
//! assert_eq!(w.calls, 1);
//! ```

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Bounds on one walk. The defaults keep a walk of untrusted bytes to milliseconds and a few
/// megabytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkLimits {
    /// Most opcodes decoded; a walk still going after them ends [`End::OpLimit`].
    pub max_ops: u64,
    /// Most distinct imports recorded (more are counted in [`Walk::more_imports`]).
    pub max_imports: usize,
    /// Longest string kept for `STACK_GLOBAL` and import names, in bytes (longer are cut).
    pub max_string: usize,
    /// Most memo keys tracked; beyond it every lookup is assumed to succeed.
    pub max_memo: usize,
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
    /// Opcodes decoded successfully.
    pub ops: u64,
    /// Complete pickles (`STOP`s reached).
    pub pickles: u32,
    /// The highest protocol a `PROTO` opcode declared.
    pub protocol: Option<u8>,
    /// Globals unpickling would import, `(module, name)`, deduplicated, in order.
    pub imports: Vec<(String, String)>,
    /// Distinct imports beyond [`WalkLimits::max_imports`].
    pub more_imports: u64,
    /// Calls: `REDUCE`, `BUILD`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`.
    pub calls: u64,
    /// Persistent loads: `PERSID`, `BINPERSID` (calls of the unpickler's `persistent_load`).
    pub persistent_loads: u64,
    /// Offset of the first opcode that imports or calls. Persistent loads are counted but are not
    /// effects: they call the loader's own `persistent_load` (how PyTorch files point at tensor
    /// storages) with a value, not an object the file names; a *call* of what one returns is an
    /// effect (`REDUCE` & co.).
    pub first_effect_offset: Option<u64>,
    /// Why the walk ended, e.g. `"unknown opcode 0x7b"`.
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
pub fn walk(data: &[u8], limits: &WalkLimits) -> Walk {
    let mut w = Walker::new(data, limits);
    w.run(0);
    w.finish()
}

/// Walks `data` as `pickle.load` called again and again on one file would (what torch's legacy
/// loader does): after each `STOP` a fresh unpickler (empty stack, marks and memo) continues at
/// the next byte. Ends at the first pickle that is invalid, truncated or over the opcode budget,
/// or with [`End::Stop`] when a `STOP` ends exactly at the end of `data`. Imports and calls add
/// up over all the pickles.
pub fn walk_stream(data: &[u8], limits: &WalkLimits) -> Walk {
    let mut w = Walker::new(data, limits);
    let mut at = 0usize;
    loop {
        match w.run(at) {
            Some(next) if next < data.len() => at = next,
            _ => break,
        }
    }
    w.finish()
}

/// A value on the simulated stack. Strings are kept (for `STACK_GLOBAL`); everything else is
/// either a literal built from the file's own bytes (numbers, bytes, containers, `None`: never
/// callable, so a call of one fails in CPython with a `TypeError` before anything runs) or an
/// object an import, a call or a persistent load produced (which may be anything).
#[derive(Clone)]
enum Value {
    Str(String),
    Literal,
    Object,
}

struct Walker<'a> {
    data: &'a [u8],
    limits: &'a WalkLimits,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: BTreeSet<u64>,
    /// Memo values (strings for STACK_GLOBAL through BINGET; literal or object), bounded by
    /// max_memo.
    memo_values: alloc::collections::BTreeMap<u64, Value>,
    memo_full: bool,
    /// Where the mark `pop_mark` last removed was (APPENDS & co. need an item below it).
    last_mark: usize,
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
            memo: BTreeSet::new(),
            memo_values: alloc::collections::BTreeMap::new(),
            memo_full: false,
            last_mark: 0,
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

    fn finish(self) -> Walk {
        self.result
    }

    /// Walks one pickle from `start` with a fresh unpickler. Returns the offset after its STOP,
    /// or `None` when the walk ended otherwise (the result says how).
    fn run(&mut self, start: usize) -> Option<usize> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.memo_values.clear();
        self.memo_full = false;
        let mut at = start;
        loop {
            if self.result.ops >= self.limits.max_ops {
                return self.end(End::OpLimit, at, "opcode budget exhausted");
            }
            let Some(&op) = self.data.get(at) else {
                return self.end(End::Truncated, at, "data ends before STOP");
            };
            match self.step(op, at) {
                Ok(Some(next)) => {
                    self.result.ops += 1;
                    at = next;
                }
                Ok(None) => {
                    // STOP.
                    self.result.ops += 1;
                    self.result.pickles += 1;
                    self.result.end = End::Stop;
                    self.result.end_offset = at as u64;
                    self.result.reason = String::from("STOP");
                    return Some(at + 1);
                }
                Err(Fail::Invalid(why)) => return self.end(End::Invalid, at, &why),
                Err(Fail::Truncated) => {
                    let name = opcode_name(op).unwrap_or("?");
                    return self.end(End::Truncated, at, &alloc::format!("{name} argument runs past the data"));
                }
            }
        }
    }

    fn end(&mut self, end: End, at: usize, why: &str) -> Option<usize> {
        self.result.end = end;
        self.result.end_offset = at as u64;
        self.result.reason = String::from(why);
        None
    }

    // ---- stack model -------------------------------------------------------------------------

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Items above the fence.
    fn above_fence(&self) -> usize {
        self.stack.len() - self.fence()
    }

    fn need(&self, n: usize, name: &str) -> Step<()> {
        if self.above_fence() < n { invalid(alloc::format!("stack underflow at {name}")) } else { Ok(()) }
    }

    fn pop(&mut self, n: usize, name: &str) -> Step<Vec<Value>> {
        self.need(n, name)?;
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    /// Pops the items above the innermost mark and the mark (CPython's `marker()`).
    fn pop_mark(&mut self, name: &str) -> Step<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return invalid(alloc::format!("{name} without a MARK"));
        };
        self.last_mark = mark;
        Ok(self.stack.split_off(mark))
    }

    fn effect(&mut self, at: usize) {
        if self.result.first_effect_offset.is_none() {
            self.result.first_effect_offset = Some(at as u64);
        }
    }

    fn import(&mut self, at: usize, module: &str, name: &str) {
        self.effect(at);
        let cut = |s: &str| {
            let mut end = s.len().min(self.limits.max_string);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            String::from(&s[..end])
        };
        let entry = (cut(module), cut(name));
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

    /// A call of `callable`, whose result goes on the stack.
    fn call_on(&mut self, callable: &Value, at: usize, name: &str) -> Step<()> {
        if !matches!(callable, Value::Object) {
            return invalid(alloc::format!("{name} on a value that is not callable"));
        }
        self.call(at);
        self.push(Value::Object);
        Ok(())
    }

    fn memo_put(&mut self, key: u64, value: &Value) {
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains(&key) {
            self.memo_full = true;
            return;
        }
        self.memo.insert(key);
        self.memo_values.insert(key, value.clone());
    }

    fn memo_get(&mut self, key: u64) -> Step<()> {
        if self.memo.contains(&key) {
            let v = self.memo_values.get(&key).cloned().unwrap_or(Value::Object);
            self.push(v);
            Ok(())
        } else if self.memo_full {
            self.push(Value::Object);
            Ok(())
        } else {
            invalid(alloc::format!("memo value {key} not found"))
        }
    }

    // ---- argument readers --------------------------------------------------------------------

    fn bytes(&self, at: usize, len: u64) -> Step<&'a [u8]> {
        let len = usize::try_from(len).map_err(|_| Fail::Truncated)?;
        let end = at.checked_add(len).ok_or(Fail::Truncated)?;
        self.data.get(at..end).ok_or(Fail::Truncated)
    }

    fn uint(&self, at: usize, n: usize) -> Step<u64> {
        let b = self.bytes(at, n as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A line argument: the bytes up to (not including) the next `\n`, which must exist. When
    /// the data ends first, the bytes so far must still pass `prefix_ok` (a test that holds for
    /// every prefix of a valid argument), or the walk is already invalid: a line that can never
    /// become a number does not keep a walk alive until more data comes.
    fn line(&self, at: usize, prefix_ok: fn(&[u8]) -> bool) -> Step<&'a [u8]> {
        let rest = self.data.get(at..).ok_or(Fail::Truncated)?;
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => Ok(&rest[..n]),
            None if prefix_ok(rest) => Err(Fail::Truncated),
            None => invalid("line argument cannot become valid"),
        }
    }

    fn string_value(&self, bytes: &[u8]) -> Value {
        let cut = &bytes[..bytes.len().min(self.limits.max_string)];
        Value::Str(String::from_utf8_lossy(cut).into_owned())
    }

    /// Decodes one opcode at `at`: `Ok(Some(next))`, `Ok(None)` for STOP, or why not.
    fn step(&mut self, op: u8, at: usize) -> Step<Option<usize>> {
        let arg = at + 1;
        let Some(name) = opcode_name(op) else {
            return invalid(alloc::format!("unknown opcode 0x{op:02x}"));
        };
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
                // CPython's load_pop: a mark sitting at the top of the stack is popped first.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(1, name)?;
                }
                arg
            }
            b'1' => {
                self.pop_mark(name)?;
                arg
            }
            b'2' => {
                self.need(1, name)?;
                let top = self.stack.last().cloned().unwrap_or(Value::Object);
                self.push(top);
                arg
            }
            // Line arguments.
            b'I' | b'L' | b'F' | b'g' | b'p' => {
                if op == b'p' {
                    self.need(1, name)?;
                }
                let line = self.line(arg, number_prefix)?;
                let ok = match op {
                    b'I' => line == b"00" || line == b"01" || is_int(line, false),
                    b'L' => is_int(line, true),
                    b'F' => is_float(line),
                    _ => is_int(line, false),
                };
                if !ok {
                    return invalid(alloc::format!("{name} argument is not a number"));
                }
                match op {
                    b'g' => self.memo_get(int_value(line))?,
                    b'p' => {
                        self.need(1, name)?;
                        let top = self.stack.last().cloned().unwrap_or(Value::Object);
                        self.memo_put(int_value(line), &top);
                    }
                    _ => self.push(Value::Literal),
                }
                arg + line.len() + 1
            }
            b'S' => {
                let line = self.line(arg, |p| p.first().is_none_or(|q| matches!(q, b'\'' | b'"')))?;
                let quoted =
                    line.len() >= 2 && line.first() == line.last() && matches!(line.first(), Some(b'\'' | b'"'));
                if !quoted {
                    return invalid("the STRING opcode argument must be quoted");
                }
                let v = self.string_value(&line[1..line.len() - 1]);
                self.push(v);
                arg + line.len() + 1
            }
            b'V' => {
                let line = self.line(arg, |_| true)?;
                let v = self.string_value(line);
                self.push(v);
                arg + line.len() + 1
            }
            b'P' => {
                let line = self.line(arg, <[u8]>::is_ascii)?;
                if !line.is_ascii() {
                    return invalid("persistent IDs in protocol 0 must be ASCII strings");
                }
                self.result.persistent_loads += 1;
                self.push(Value::Object);
                arg + line.len() + 1
            }
            b'c' | b'i' => {
                let module = self.line(arg, utf8_prefix)?;
                let name_at = arg + module.len() + 1;
                let global = self.line(name_at, utf8_prefix)?;
                let (Ok(module), Ok(global)) = (core::str::from_utf8(module), core::str::from_utf8(global)) else {
                    return invalid(alloc::format!("{name} module or name is not UTF-8"));
                };
                if op == b'i' {
                    self.pop_mark(name)?;
                    self.import(at, module, global);
                    self.call(at);
                } else {
                    self.import(at, module, global);
                }
                self.push(Value::Object);
                name_at + global.len() + 1
            }
            // Fixed-size arguments.
            b'J' => self.fixed(arg, 4)?,
            b'K' => self.fixed(arg, 1)?,
            b'M' => self.fixed(arg, 2)?,
            b'G' => self.fixed(arg, 8)?,
            b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => {
                self.push(Value::Literal);
                arg
            }
            0x80 => {
                let proto = self.uint(arg, 1)? as u8;
                if proto > 5 {
                    return invalid(alloc::format!("unsupported pickle protocol: {proto}"));
                }
                self.result.protocol = Some(self.result.protocol.map_or(proto, |p| p.max(proto)));
                arg + 1
            }
            0x95 => {
                let len = self.uint(arg, 8)?;
                // CPython reads the whole frame before going on.
                self.bytes(arg + 8, len)?;
                arg + 8
            }
            // Length-prefixed arguments.
            b'T' | b'X' | b'B' => {
                let len = self.uint(arg, 4)?;
                if op == b'T' && len > i32::MAX as u64 {
                    return invalid("BINSTRING pickle has negative byte count");
                }
                self.counted(op, arg + 4, len)?
            }
            b'U' | b'C' | 0x8c => {
                let len = self.uint(arg, 1)?;
                self.counted(op, arg + 1, len)?
            }
            0x8d | 0x8e | 0x96 => {
                let len = self.uint(arg, 8)?;
                self.counted(op, arg + 8, len)?
            }
            0x8a => {
                let len = self.uint(arg, 1)?;
                self.bytes(arg + 1, len)?;
                self.push(Value::Literal);
                arg + 1 + len as usize
            }
            0x8b => {
                let len = self.uint(arg, 4)?;
                if len > i32::MAX as u64 {
                    return invalid("LONG pickle has negative byte count");
                }
                self.bytes(arg + 4, len)?;
                self.push(Value::Literal);
                arg + 4 + len as usize
            }
            // Memo.
            b'h' => {
                let key = self.uint(arg, 1)?;
                self.memo_get(key)?;
                arg + 1
            }
            b'j' => {
                let key = self.uint(arg, 4)?;
                self.memo_get(key)?;
                arg + 4
            }
            b'q' | b'r' => {
                let n = if op == b'q' { 1 } else { 4 };
                let key = self.uint(arg, n)?;
                self.need(1, name)?;
                let top = self.stack.last().cloned().unwrap_or(Value::Object);
                self.memo_put(key, &top);
                arg + n
            }
            0x94 => {
                self.need(1, name)?;
                let top = self.stack.last().cloned().unwrap_or(Value::Object);
                let key = self.memo.len() as u64;
                self.memo_put(key, &top);
                arg
            }
            // Containers.
            // APPEND and SETITEM leave the container (whatever it is) on the stack.
            b'a' => {
                self.need(2, name)?;
                self.pop(1, name)?;
                arg
            }
            b's' => {
                self.need(3, name)?;
                self.pop(2, name)?;
                arg
            }
            b'e' | b'u' | 0x90 => {
                let items = self.pop_mark(name)?;
                if op == b'u' && items.len() % 2 != 0 {
                    return invalid("odd number of items for SETITEMS");
                }
                // The container sits below the mark (CPython: `x <= 0` is an underflow).
                if self.last_mark == 0 {
                    return invalid(alloc::format!("stack underflow at {name}"));
                }
                arg
            }
            b't' | b'l' | 0x91 => {
                self.pop_mark(name)?;
                self.push(Value::Literal);
                arg
            }
            b'd' => {
                let items = self.pop_mark(name)?;
                if items.len() % 2 != 0 {
                    return invalid("odd number of items for DICT");
                }
                self.push(Value::Literal);
                arg
            }
            0x85..=0x87 => {
                self.pop(usize::from(op - 0x84), name)?;
                self.push(Value::Literal);
                arg
            }
            // Imports and calls.
            0x93 => {
                let items = self.pop(2, name)?;
                let (Value::Str(module), Value::Str(global)) = (&items[0], &items[1]) else {
                    // CPython requires two str; an untracked value (e.g. from a full memo) walks on.
                    if self.memo_full {
                        self.import(at, "?", "?");
                        self.push(Value::Object);
                        return Ok(Some(arg));
                    }
                    return invalid("STACK_GLOBAL requires str");
                };
                let (module, global) = (module.clone(), global.clone());
                self.import(at, &module, &global);
                self.push(Value::Object);
                arg
            }
            0x82 | 0x83 | 0x84 => {
                // The extension registry (`copyreg.add_extension`) is empty in every standard
                // Python and no ML loader fills it: CPython rejects the code as unregistered.
                // The one deliberate step away from the superset: counting these as imports would
                // flag 1 in 8192 safetensors header lengths for an import that cannot happen.
                let n = match op {
                    0x82 => 1,
                    0x83 => 2,
                    _ => 4,
                };
                let code = self.uint(arg, n)?;
                return invalid(alloc::format!("unregistered extension code {code}"));
            }
            // The callable (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ) or the instance (BUILD) is the first
            // item: unless an import, a call or a persistent load produced it, CPython fails.
            b'R' | b'b' | 0x81 => {
                let items = self.pop(2, name)?;
                self.call_on(&items[0], at, name)?;
                arg
            }
            0x92 => {
                let items = self.pop(3, name)?;
                self.call_on(&items[0], at, name)?;
                arg
            }
            b'o' => {
                let items = self.pop_mark(name)?;
                let Some(cls) = items.first() else {
                    return invalid("OBJ needs a class after the MARK");
                };
                self.call_on(cls, at, name)?;
                arg
            }
            b'Q' => {
                self.pop(1, name)?;
                self.result.persistent_loads += 1;
                self.push(Value::Object);
                arg
            }
            0x97 => {
                self.push(Value::Literal);
                arg
            }
            0x98 => {
                self.need(1, name)?;
                arg
            }
            _ => return invalid(alloc::format!("unknown opcode 0x{op:02x}")),
        };
        Ok(Some(next))
    }

    fn fixed(&mut self, at: usize, n: u64) -> Step<usize> {
        self.bytes(at, n)?;
        self.push(Value::Literal);
        Ok(at + n as usize)
    }

    /// A string or bytes argument of `len` bytes at `at`.
    fn counted(&mut self, op: u8, at: usize, len: u64) -> Step<usize> {
        let bytes = self.bytes(at, len)?;
        let value = match op {
            // Unicode: UTF-8 with surrogates allowed ('surrogatepass').
            b'X' | 0x8c | 0x8d => {
                if !is_utf8_surrogatepass(bytes) {
                    return invalid("BINUNICODE argument is not UTF-8");
                }
                self.string_value(bytes)
            }
            // py2 str, decoded as ASCII by default; bytes and bytearray are not str.
            b'T' | b'U' => self.string_value(bytes),
            _ => Value::Literal,
        };
        self.push(value);
        Ok(at + bytes.len())
    }
}

/// A Python int literal as `int(s, 0)` reads it (superset): optional whitespace and sign, digits
/// with underscores, optional 0x/0o/0b prefix; `long` also allows a trailing `L`.
fn is_int(line: &[u8], long: bool) -> bool {
    let Ok(s) = core::str::from_utf8(line) else { return false };
    let mut s = s.trim();
    if long {
        s = s.strip_suffix('L').unwrap_or(s);
    }
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && s.as_bytes()[0].is_ascii_digit()
}

/// Every prefix of an int or float literal stays within these bytes.
fn number_prefix(p: &[u8]) -> bool {
    p.iter().all(|&b| b.is_ascii_alphanumeric() || b" \t\r\x0b\x0c+-._".contains(&b))
}

/// Every prefix of UTF-8 text is UTF-8 up to a possibly incomplete last character.
fn utf8_prefix(p: &[u8]) -> bool {
    match core::str::from_utf8(p) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn int_value(line: &[u8]) -> u64 {
    core::str::from_utf8(line).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(u64::MAX)
}

/// A float literal (superset): digits, sign, point, exponent, and the letters of inf/nan.
fn is_float(line: &[u8]) -> bool {
    let Ok(s) = core::str::from_utf8(line) else { return false };
    let s = s.trim();
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE_infatyINFATY".contains(&b))
        && s.bytes().any(|b| b.is_ascii_digit() || b"nN".contains(&b))
}

/// UTF-8, also accepting encoded surrogates (U+D800..U+DFFF), as Python's 'surrogatepass'.
fn is_utf8_surrogatepass(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match core::str::from_utf8(&bytes[i..]) {
            Ok(_) => return true,
            Err(e) => {
                i += e.valid_up_to();
                // An encoded surrogate: ED A0..BF 80..BF.
                match bytes.get(i..i + 3) {
                    Some([0xED, b1, b2]) if (0xA0..=0xBF).contains(b1) && (0x80..=0xBF).contains(b2) => i += 3,
                    _ => return false,
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn w(data: &[u8]) -> Walk {
        walk(data, &WalkLimits::default())
    }

    #[test]
    fn classic_malicious_pickle() {
        let r = w(b"cos\nsystem\n(S'echo hi'\ntR.");
        assert_eq!(r.end, End::Stop);
        assert_eq!(r.imports, vec![("os".into(), "system".into())]);
        assert_eq!((r.calls, r.first_effect_offset), (1, Some(0)));
    }

    #[test]
    fn stack_global_through_the_memo() {
        // protocol 4: "os" memoized, "system", STACK_GLOBAL; later "os" again via BINGET.
        let data = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94h\x00\x8c\x04path\x94\x93\x94.";
        let r = w(data);
        assert_eq!(r.end, End::Stop, "{r:?}");
        assert_eq!(r.protocol, Some(4));
        assert_eq!(r.imports, vec![("os".into(), "system".into()), ("os".into(), "path".into())]);
    }

    #[test]
    fn fence_semantics() {
        // MARK then POP: pops the mark (load_pop), then STOP underflows on an empty stack.
        assert_eq!(w(b"N(0.").end, End::Stop);
        assert_eq!(w(b"(0.").end, End::Invalid);
        // REDUCE cannot reach below a mark.
        let r = w(b"NN(R.");
        assert_eq!((r.end, r.reason.as_str()), (End::Invalid, "stack underflow at REDUCE"));
        // APPENDS needs a list below the mark.
        assert_eq!(w(b"(K\x01e.").end, End::Invalid);
        assert_eq!(w(b"](K\x01e.").end, End::Stop);
        assert_eq!(w(b"(K\x01K\x02K\x03d.").end, End::Invalid); // odd DICT
    }

    #[test]
    fn truncated_versus_invalid() {
        assert_eq!(w(b"").end, End::Truncated);
        assert_eq!(w(b"I12").end, End::Truncated); // no newline yet
        assert_eq!(w(b"I12{\"a\"").end, End::Invalid); // ...and it can never become a number
        assert_eq!(w(b"Sx").end, End::Invalid);
        assert_eq!(w(b"P\xff").end, End::Invalid);
        assert_eq!(w(b"cos\xff").end, End::Invalid);
        assert_eq!(w(b"cos\xe2\x82").end, End::Truncated);
        assert_eq!(w(b"Iabc\n.").end, End::Invalid);
        assert_eq!(w(b"X\x10\x00\x00\x00abc").end, End::Truncated);
        assert_eq!(w(b"\x80\x06.").end, End::Invalid);
        assert_eq!(w(b"\x95\x00\x01\x00\x00\x00\x00\x00\x00N.").end, End::Truncated);
        assert_eq!(w(b"T\xff\xff\xff\xff").end, End::Invalid);
        assert_eq!(w(b"\x8b\xff\xff\xff\xff").end, End::Invalid);
        assert_eq!(w(b"{").end, End::Invalid);
        // 8-byte lengths near u64::MAX never overflow.
        for op in [0x8du8, 0x8e, 0x96, 0x95] {
            let mut d = vec![op];
            d.extend_from_slice(&u64::MAX.to_le_bytes());
            assert_eq!(w(&d).end, End::Truncated);
        }
        assert_eq!(w(b"J\x01\x02").end, End::Truncated);
    }

    #[test]
    fn text_arguments_follow_cpython() {
        assert_eq!(w(b"S'abc'\n.").end, End::Stop);
        assert_eq!(w(b"Sabc\n.").end, End::Invalid);
        assert_eq!(w(b"P\xff\n.").end, End::Invalid);
        assert_eq!(w(b"Pid\n.").persistent_loads, 1);
        assert_eq!(w(b"I01\n.").end, End::Stop);
        assert_eq!(w(b"L123L\n.").end, End::Stop);
        assert_eq!(w(b"F1.5e3\n.").end, End::Stop);
        assert_eq!(w(b"c\xff\nx\nN.").end, End::Invalid);
        assert_eq!(w(b"X\x03\x00\x00\x00\xed\xa0\x80.").end, End::Stop); // a lone surrogate
        assert_eq!(w(b"X\x01\x00\x00\x00\xff.").end, End::Invalid);
        assert_eq!(w(b"h\x00.").end, End::Invalid); // memo empty
        assert_eq!(w(b"Np1\ng1\n.").end, End::Stop);
    }

    #[test]
    fn streams_continue_after_stop() {
        let data = b"K\x01.cos\nsystem\n(S'x'\ntR.";
        assert_eq!(w(data).imports, vec![]);
        let r = walk_stream(data, &WalkLimits::default());
        assert_eq!((r.end, r.pickles), (End::Stop, 2));
        assert_eq!(r.imports, vec![("os".into(), "system".into())]);
        let r = walk_stream(b"K\x01.\x00", &WalkLimits::default());
        assert_eq!((r.end, r.pickles, r.end_offset), (End::Invalid, 1, 3));
    }

    #[test]
    fn calls_need_something_callable() {
        // REDUCE on bytes, OBJ on bytes, BUILD on a list: TypeError in CPython, nothing runs.
        assert_eq!(w(b"C\x01x)R.").end, End::Invalid);
        assert_eq!(w(b"(C\x01xo.").end, End::Invalid);
        assert_eq!(w(b"]}b.").end, End::Invalid);
        // A persistent load's result can be called: that is an effect.
        let r = w(b"Pid\n)R.");
        assert_eq!((r.end, r.calls, r.persistent_loads), (End::Stop, 1, 1));
        assert!(r.has_effects());
        // A bare persistent load is not.
        assert!(!w(b"Pid\n.").has_effects());
    }

    #[test]
    fn op_limit() {
        let data = vec![b'N'; 100];
        let r = walk(&data, &WalkLimits { max_ops: 10, ..WalkLimits::default() });
        assert_eq!((r.end, r.ops), (End::OpLimit, 10));
    }

    #[test]
    fn safetensors_prefixes_die_in_the_prefix() {
        // Every header length a writer produces (multiples of 8 below 100 MB) followed by '{"':
        // the walk must never get to an import or a call.
        for n in (8u64..200_000).step_by(8) {
            let mut d = n.to_le_bytes().to_vec();
            d.extend_from_slice(b"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
            let r = walk_stream(&d, &WalkLimits::default());
            assert!(!r.has_effects(), "{n}: {r:?}");
        }
    }
}
