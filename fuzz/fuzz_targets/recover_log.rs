//! Arbitrary bytes as a disk log segment: opening the log must never panic and never fail
//! on content, and a second open must find nothing left to repair.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use flowgate_storage::sim::SimFs;
use flowgate_storage::{Fs, Log, LogOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new(1);
    let dir = Path::new("/data/t");
    let mut file = fs.open_append(&dir.join("00000000000000000001.seg")).unwrap();
    file.write_all(data).unwrap();
    file.sync().unwrap();
    fs.sync_dir(dir).unwrap();
    let options = LogOptions {
        segment_bytes: 1 << 16,
        ..LogOptions::default()
    };
    let (_log, first) = Log::open(Arc::new(fs.clone()), dir, options).expect("content never fails recovery");
    let (_log, second) = Log::open(Arc::new(fs), dir, options).unwrap();
    assert_eq!(second.corrupt_records, 0);
    assert_eq!(second.events, first.events);
});
