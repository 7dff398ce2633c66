//! What the host-kvm tests share: the shipped scenario files.

use std::path::{Path, PathBuf};

/// The scenario files directly in `scenarios/<sub>` ("" for scenarios/ itself), sorted.
pub fn scenario_files(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}
