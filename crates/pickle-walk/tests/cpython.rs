//! Differential test of `pickle_walk` against the CPython on this machine (`python3`,
//! standard library only; a machine without it fails this test rather than skipping it).
//!
//! 1. Pickles that `pickle.dumps` writes for varied objects, protocols 0-5: the walker stops where
//!    `pickletools.genops` finds STOP, after as many opcodes, and reports exactly the globals that
//!    CPython's own unpickler asks `find_class` for (recorded by an unpickler whose `find_class`
//!    returns an inert stub, so nothing pickled is imported or run).
//! 2. Seeded mutations of those pickles and random opcode soups, loaded by an unpickler whose
//!    `find_class` and `persistent_load` record and raise: whenever CPython got to either, the
//!    walker reports an effect, and whenever CPython returned, the walker stopped at the same byte.

use std::io::Write;
use std::process::{Command, Stdio};

use pickle_walk::{End, Walk, WalkLimits, walk, walk_stream};

/// Dumps the objects and prints, one pickle a line: protocol, hex, STOP offset, genops opcode
/// count, and the (module, name) pairs the unpickler asked for, hex-encoded as `module\0name`.
const DUMP: &str = r#"
import pickle, pickletools, collections, datetime, decimal, fractions, os, sys

class Evil:
    def __reduce__(self):
        return (os.system, ('echo',))

class Plain:
    def __init__(self):
        self.a = 1
        self.b = [1, 'two']

class Slots:
    __slots__ = ('x', 'y')
    def __init__(self):
        self.x = 3
        self.y = 'y'

class Stub:
    def __new__(cls, *a, **k): return object.__new__(cls)
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return Stub()
    def __setstate__(self, state): pass
    def __setitem__(self, k, v): pass
    def append(self, x): pass
    def extend(self, xs): pass
    def add(self, x): pass

class Recorder(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in self.found:
            self.found.append((module, name))
        return Stub

shared = [1, 2]
rec = []
rec.append(rec)
objs = [
    0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**64, -2**100, 10**400,
    1.5, -0.0, float('inf'), float('nan'), 1e300,
    b'', b'abc', b'\x00\xff' * 200, bytearray(b'ba'), bytearray(),
    '', 'abc', 'caf\u00e9', '\U0001f600', '\ud800x', 'a\nb\\c"\'', 'x' * 300,
    None, True, False, [], {}, set(), frozenset(), (),
    [1, [2, [3, ()]]], {'a': 1, 2: [3], (4,): None}, {1, 2, 3}, frozenset({4, 5}),
    (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [shared, shared, (shared,)], rec,
    list(range(2500)), {i: str(i) for i in range(1100)}, set(range(1200)),
    collections.OrderedDict(a=1, b=[2]), collections.Counter('abracadabra'),
    collections.deque([1, 2]), collections.defaultdict(list, {'k': [1]}),
    datetime.datetime(2020, 1, 2, 3, 4, 5, 6), datetime.date(2020, 1, 1),
    datetime.timedelta(days=3), decimal.Decimal('1.5'), fractions.Fraction(1, 3),
    complex(1, 2), range(3), slice(1, 2), Evil(), [Evil(), Evil()], Plain(), Slots(),
    {'model': Plain(), 'opt': [Evil(), datetime.date(2021, 5, 6)], 'step': 10**20},
    type, int, os.path.join, pickle.Pickler,
]
out = sys.stdout
for proto in range(6):
    for obj in objs:
        try:
            data = pickle.dumps(obj, protocol=proto)
        except Exception:
            continue
        ops = list(pickletools.genops(data))
        stop = [pos for op, arg, pos in ops if op.name == 'STOP']
        r = Recorder(__import__('io').BytesIO(data))
        r.found = []
        r.load()
        found = ','.join((m + '\0' + n).encode('utf-8', 'surrogatepass').hex() for m, n in r.found)
        out.write('%d %s %d %d %s\n' % (proto, data.hex(), stop[0], len(ops), found or '-'))
"#;

/// Loads each hex line of stdin once with each of CPython's unpicklers, the C `pickle.Unpickler`
/// and the pure-Python `pickle._Unpickler` (joblib's, dill's, pandas' fallback), and prints one
/// verdict for each, separated by a space: `ok:<offset after STOP>`, `effect` (reached
/// `find_class` or `persistent_load`, which raise) or `err:<exception>`.
const LOAD: &str = r#"
import pickle, io, sys, resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))

class Reached(Exception):
    pass

def recorder(base):
    class Recorder(base):
        def find_class(self, module, name):
            raise Reached()
        def persistent_load(self, pid):
            raise Reached()
    return Recorder

unpicklers = [recorder(pickle.Unpickler), recorder(pickle._Unpickler)]
out = []
for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    verdicts = []
    for Recorder in unpicklers:
        # peekable, so that the unpickler gives back what it read ahead in a frame
        f = io.BufferedReader(io.BytesIO(data))
        try:
            Recorder(f, buffers=iter([bytearray(b'ab')] * 4)).load()
            verdicts.append('ok:%d' % f.tell())
        except Reached:
            verdicts.append('effect')
        except BaseException as e:
            verdicts.append('err:' + type(e).__name__)
    out.append(' '.join(verdicts))
sys.stdout.write('\n'.join(out) + '\n')
"#;

fn python(script: &str, stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is required for this test (it is on every machine of this project)");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "python3 failed: {:?}", output.status);
    String::from_utf8(output.stdout).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Dumped {
    protocol: u8,
    data: Vec<u8>,
    stop: u64,
    ops: u64,
    imports: Vec<(String, String)>,
}

fn dumped() -> Vec<Dumped> {
    python(DUMP, "")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let imports = if f[4] == "-" {
                Vec::new()
            } else {
                f[4].split(',')
                    .map(|pair| {
                        let pair = String::from_utf8_lossy(&hex(pair)).into_owned();
                        let (m, n) = pair.split_once('\0').unwrap();
                        (m.to_owned(), n.to_owned())
                    })
                    .collect()
            };
            Dumped {
                protocol: f[0].parse().unwrap(),
                data: hex(f[1]),
                stop: f[2].parse().unwrap(),
                ops: f[3].parse().unwrap(),
                imports,
            }
        })
        .collect()
}

/// xorshift64*: seeded, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Well-formed opcode fragments, so that random sequences get far enough to matter.
const FRAGMENTS: &[&[u8]] = &[
    b"N",
    b"(",
    b"K\x01",
    b"J\xff\xff\xff\xff",
    b"I1\n",
    b"I\x00\n",
    b"L5L\n",
    b"F1.5\n",
    b"S'os'\n",
    b"Vsystem\n",
    b"U\x02os",
    b"X\x06\x00\x00\x00system",
    b"\x8c\x02os",
    b"\x8c\x06system",
    b"\x93",
    b"R",
    b"b",
    b"\x81",
    b"\x92",
    b"q\x00",
    b"q\x01",
    b"h\x00",
    b"h\x01",
    b"r\x00\x00\x00\x00",
    b"j\x00\x00\x00\x00",
    b"p0\n",
    b"g0\n",
    b"\x94",
    b"0",
    b"1",
    b"2",
    b")",
    b"]",
    b"}",
    b"\x8f",
    b"a",
    b"s",
    b"e",
    b"u",
    b"\x90",
    b"t",
    b"l",
    b"d",
    b"\x91",
    b"\x85",
    b"\x86",
    b"\x87",
    b"Pid\n",
    b"Q",
    b"cos\nsystem\n",
    b"ibuiltins\nlist\n",
    b"o",
    b"\x82\x01",
    b"\x97",
    b"\x98",
    b"\x80\x04",
    b"\x80\x06",
    b"\x95\x02\x00\x00\x00\x00\x00\x00\x00",
    b"C\x01x",
    b"B\x01\x00\x00\x00x",
    b"\x8a\x01\x01",
    b"\x88",
    b"\x89",
    b".",
    b".",
    b"G\x00\x00\x00\x00\x00\x00\xf0\x3f",
    // Where the pure-Python unpickler accepts what the C one refuses.
    b"F 1_0.5 \n",
    b"F\t-inf\x0c\n",
    b"I 7 \n",
    b"p99999999999999999999\n",
    b"g99_999_999_999_999_999_999\n",
    b"p 1_0 \n",
    b"g10\n",
    b"\x95\xff\xff\x00\x00\x00\x00\x00\x00",
    b"c\nx\n",
    b"cos\n\n",
    b"ios\nsystem\n",
    b"cos\nsystemX",
    b"cbuiltins",
    b"c",
];

fn mutants(seeds: &[&[u8]], count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5A4D_10AD_0000_0001);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let seed = seeds[rng.below(seeds.len())];
        let mut d = seed.to_vec();
        match rng.below(7) {
            0 => {
                for _ in 0..=rng.below(3) {
                    let i = rng.below(d.len());
                    d[i] = rng.next() as u8;
                }
            }
            1 => {
                let i = rng.below(d.len() + 1);
                let frag = FRAGMENTS[rng.below(FRAGMENTS.len())];
                d.splice(i..i, frag.iter().copied());
            }
            2 => {
                let i = rng.below(d.len());
                let j = (i + 1 + rng.below(8)).min(d.len());
                d.drain(i..j);
            }
            3 => d.truncate(rng.below(d.len())),
            4 => {
                let other = seeds[rng.below(seeds.len())];
                let cut = rng.below(d.len());
                d.truncate(cut);
                d.extend_from_slice(&other[rng.below(other.len())..]);
            }
            _ => {
                d.clear();
                for _ in 0..=rng.below(24) {
                    d.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                }
                if rng.below(2) == 0 {
                    d.push(b'.');
                }
            }
        }
        out.push(d);
    }
    out
}

#[test]
fn pickles_python_writes() {
    let dumped = dumped();
    assert!(dumped.len() >= 6 * 60, "only {} pickles", dumped.len());
    let limits = WalkLimits::default();
    let mut with_imports = 0;
    for d in &dumped {
        let w = walk(&d.data, &limits);
        let what = format!("protocol {} {}: {w:?}", d.protocol, to_hex(&d.data[..d.data.len().min(200)]));
        assert_eq!((w.end, w.end_offset, w.ops, w.pickles), (End::Stop, d.stop, d.ops, 1), "{what}");
        assert_eq!(w.imports, d.imports, "{what}");
        assert_eq!(w.first_effect_offset.is_some(), !d.imports.is_empty(), "{what}");
        assert!(w.protocol.unwrap_or(0) <= d.protocol, "{what}");
        with_imports += usize::from(!d.imports.is_empty());
    }
    assert!(with_imports >= 6 * 15, "only {with_imports} pickles import something");
    // A file of pickles back to back, as torch's legacy format is: one walk over all of them.
    for protocol in 0..6 {
        let mine: Vec<&Dumped> = dumped.iter().filter(|d| d.protocol == protocol).collect();
        let stream: Vec<u8> = mine.iter().flat_map(|d| d.data.iter().copied()).collect();
        let w = walk_stream(&stream, &limits);
        assert_eq!((w.end, w.pickles as usize), (End::Stop, mine.len()), "protocol {protocol}");
        assert_eq!(w.end_offset, stream.len() as u64 - 1);
        assert_eq!(w.ops, mine.iter().map(|d| d.ops).sum::<u64>());
        for d in &mine {
            assert!(d.imports.iter().all(|i| w.imports.contains(i)), "protocol {protocol}");
        }
    }
}

#[test]
fn the_walker_walks_whatever_cpython_runs() {
    let dumped = dumped();
    let seeds: Vec<&[u8]> = dumped.iter().map(|d| &d.data[..]).filter(|d| d.len() <= 4096).collect();
    let inputs = mutants(&seeds, 3000);
    let stdin: String = inputs.iter().map(|d| to_hex(d) + "\n").collect();
    let verdicts: Vec<String> = python(LOAD, &stdin).lines().map(str::to_owned).collect();
    assert_eq!(verdicts.len(), inputs.len());

    // Each input is the whole "file" the unpicklers read: its end is the end of the file.
    let limits = WalkLimits { whole_file: true, ..WalkLimits::default() };
    let (mut effects, mut returned, mut approximated) = (0, 0, 0);
    let mut python_only = 0;
    for (data, verdicts) in inputs.iter().zip(&verdicts) {
        let w: Walk = walk(data, &limits);
        let (c, py) = verdicts.split_once(' ').expect("two verdicts");
        let what = format!("{} -> C {c}, pure Python {py}, walker {w:?}", to_hex(data));
        for verdict in [c, py] {
            if verdict == "effect" {
                effects += 1;
                // Imports and calls are effects; a persistent load is counted (see `Walk`).
                assert!(
                    w.has_effects() || w.persistent_loads > 0,
                    "CPython reached find_class or persistent_load: {what}"
                );
            } else if verdict.starts_with("ok:") {
                returned += 1;
                // Or Ambiguous: a read across a frame's end, which the gate refuses (another
                // CPython may read those bytes another way).
                assert!(matches!(w.end, End::Stop | End::Ambiguous), "CPython returned: {what}");
            } else if w.end == End::Stop && !w.has_effects() {
                // CPython failed where the walker does not look (escapes, encodings, types).
                approximated += 1;
            }
        }
        // The C unpickler gives back what it read ahead: it stops exactly where the walk does.
        if let Some(after) = c.strip_prefix("ok:").filter(|_| w.end == End::Stop) {
            assert_eq!(w.end_offset + 1, after.parse::<u64>().unwrap(), "{what}");
        }
        python_only += usize::from(py == "effect" && c != "effect");
    }
    eprintln!(
        "{} inputs x 2 unpicklers: an effect in {effects}, returned in {returned} ({python_only} inputs reach an \
         effect only in the pure-Python unpickler); the walker walked {approximated} to STOP that CPython refused",
        inputs.len()
    );
    // The property is only tested if both sides of it occur often, and the unpicklers differ.
    assert!(effects >= 400 && returned >= 400, "effects {effects}, returned {returned}");
    assert!(python_only >= 20, "only {python_only} inputs reach an effect in pickle._Unpickler alone");
}
