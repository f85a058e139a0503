//! What the application logs, captured so tests can check it.

use super::app::test_settings;

/// Every log line of this test process, so tests can check what reaches
/// the logs (capped; also echoed to stdout with `TEST_LOG=1`).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut logs = LOGS.lock().unwrap();
        if logs.len() + buf.len() <= MAX_LOG_BYTES {
            logs.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub(super) fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut settings = test_settings().log;
        settings.format = herald::settings::LogFormat::Json;
        herald::app::logging::init_logging(&settings, || CaptureWriter, false);
    });
}
