//! Generates the gRPC types and service of `shardcar.config.v1` (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/shardcar/config/v1/config.proto"], &["proto"])?;
    Ok(())
}
