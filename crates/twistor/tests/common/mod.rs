//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

#[allow(unused_imports)]
pub use twistor_testing::process::{
    ChildGuard, closed_port, example, have, have_twisted, run_with_input,
};

/// The directory cargo puts this test's sibling binaries in (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The path of a peer script in `tests/peers`.
pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Sends back what it receives.
pub struct Echo;

impl twistor::Protocol for Echo {
    fn data_received(&mut self, t: &twistor::Transport, data: &[u8]) {
        t.write(data);
    }
}
