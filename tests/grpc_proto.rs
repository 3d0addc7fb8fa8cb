//! The gRPC chat relay examples use Rust code generated from `examples/chat/proto/chat_relay.proto`. It is
//! checked in (`examples/chat/src/proto.rs`) so that building needs no `protoc`; this test
//! regenerates it in memory with `protox` (a pure-Rust protobuf compiler) and `tonic-prost-build`
//! and fails when the checked-in file is stale.
//!
//! After editing the proto, regenerate with:
//!
//! ```text
//! cargo test --test grpc_proto -- --ignored regenerate
//! ```

use std::path::{Path, PathBuf};

const GENERATED: &str = "examples/chat/src/proto.rs";
const HEADER: &str =
    "// @generated from proto/chat_relay.proto by tests/grpc_proto.rs; do not edit.\n\
// Regenerate: cargo test --test grpc_proto -- --ignored regenerate\n\n";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compile the proto with protox and run tonic's code generator into a scratch directory.
fn generate(scratch: &str) -> String {
    let proto_dir = root().join("examples/chat/proto");
    let fds = protox::compile(["chat_relay.proto"], [&proto_dir]).expect("proto compiles");
    let out: PathBuf = std::env::temp_dir().join(format!(
        "sealwire-grpc-gen-{}-{scratch}",
        std::process::id()
    ));
    std::fs::create_dir_all(&out).expect("scratch dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("code generation");
    let code = std::fs::read_to_string(out.join("sealwire.chat_relay.v1.rs")).expect("generated");
    let _ = std::fs::remove_dir_all(&out);
    format!("{HEADER}{code}")
}

#[test]
fn checked_in_generated_code_is_up_to_date() {
    let expected = generate("check");
    let actual = std::fs::read_to_string(root().join(GENERATED)).unwrap_or_default();
    assert!(
        actual == expected,
        "{GENERATED} is stale; run `cargo test --test grpc_proto -- --ignored regenerate`"
    );
    // Sanity: the service and both sides are there, so a silently empty output cannot pass.
    assert!(expected.contains("pub mod chat_relay_client"));
    assert!(expected.contains("pub mod chat_relay_server"));
    assert!(expected.contains("pub struct Uplink"));
}

#[test]
#[ignore = "writes examples/chat/src/proto.rs; run by hand after editing the proto"]
fn regenerate() {
    let code = generate("write");
    std::fs::write(root().join(GENERATED), code).expect("write generated code");
}
