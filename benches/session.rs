//! Placeholder until the session benches land.
fn main() {}
