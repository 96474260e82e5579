//! Apply benchmark (filled in below).

fn main() {}
