//! The web console's assets, embedded in the binary. The browser app's sources are in
//! `web/` (TypeScript, Preact); `scripts/console build` compiles them into `assets/`,
//! which is committed, and `scripts/console check` proves the committed files are what
//! the sources and the lock file build. The API server serves them at `/console`
//! (`yunhan-api`'s `web_console` module); docs/console.md tells the whole design.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/console/`, e.g. `index.html` or `assets/app.js`.
    pub path: &'static str,
    pub body: &'static [u8],
    /// The same bytes gzipped at build time, when the build made them.
    pub gzip: Option<&'static [u8]>,
}

impl Asset {
    pub fn content_type(&self) -> &'static str {
        content_type_of(self.path)
    }
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded file at `path` (relative to `assets/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The content type the server sends for a file of this name.
pub fn content_type_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
