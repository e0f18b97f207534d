#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcar_fuzz::server_handshake(data);
});
