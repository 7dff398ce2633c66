//! Links the payload with its own linker script (fixed load address, `_start` first).

use std::{env, path::PathBuf};

fn main() {
    let dir = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = PathBuf::from(dir).join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg=-T{}", script.display());
    // defmt's section layout (the `.defmt` INFO section the VMM decodes with).
    println!("cargo:rustc-link-arg=-Tdefmt.x");
}
