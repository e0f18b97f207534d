#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcar_fuzz::stream_filter(data);
});
