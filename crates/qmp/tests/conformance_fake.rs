//! The QMP conformance suite against the fake server.
mod conformance;

use conformance::Target;
use yunhan_qmp::fake::{FakeConfig, FakeQmpServer};

/// Configured like `-machine none`: no guest reacts to the power button.
async fn start() -> Target {
    let config = FakeConfig {
        guest_handles_powerdown: false,
        ..Default::default()
    };
    let server = FakeQmpServer::start_with(config).await.expect("start fake");
    Target {
        socket: server.socket_path().to_owned(),
        scratch: tempfile::tempdir().unwrap(),
        guard: Box::new(server),
    }
}

conformance_suite!(start);
