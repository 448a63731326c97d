fn main() {
    let sandbox = sandload::Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    let bytes = bytes::Bytes::from(sandload::samples::Dng::patterned(4000, 3000).to_bytes());
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let raw = sandbox.decode_raw(sandload::Input::from_bytes(bytes.clone(), "x.dng")).unwrap();
        let r = raw.receipt();
        println!("total {:?} guest {:?} receipt total {:?} peak {} MiB", t.elapsed(), r.guest_time, r.total_time, r.guest_peak_memory_bytes >> 20);
    }
}
