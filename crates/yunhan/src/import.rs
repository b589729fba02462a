//! `yunhan up --import-image NAME=FILE`: a bootable public image right after
//! the first run. Done through the cloud's own API, as the admin whose token
//! `up` wrote to the client config, exactly like
//! `yunhan image create NAME --file FILE --public`: the file is uploaded, so
//! it may live anywhere `up` can read (server-path imports are confined to
//! the import directory).

use std::path::PathBuf;
use std::time::Duration;

/// Imports each image that is not Active yet; failures are logged, never fatal
/// (the cloud works without them).
pub async fn import_images(endpoint: String, images: Vec<(String, PathBuf)>) {
    if images.is_empty() {
        return;
    }
    let config = yunhan_cli::config::default_path();
    let token = match yunhan_cli::ClientConfig::load(&config) {
        Ok(c) => c.token,
        Err(e) => {
            tracing::warn!(config = %config.display(), "cannot import images without the admin's client config: {e}");
            return;
        }
    };
    let client = yunhan_cli::Client::new(&endpoint, &token);
    if !api_ready(&client).await {
        tracing::warn!("the API did not come up; images not imported");
        return;
    }
    for (name, file) in images {
        let file = std::path::absolute(&file).unwrap_or(file);
        match yunhan_cli::ensure_public_image(&client, &name, &file).await {
            Ok(true) => eprintln!("imported {} as the public image {name:?}", file.display()),
            Ok(false) => tracing::info!(image = %name, "image already Active"),
            Err(e) => {
                tracing::warn!(image = %name, file = %file.display(), "cannot import the image: {e}")
            }
        }
    }
}

/// Polls `whoami` until the API answers (it starts serving right after this task).
async fn api_ready(client: &yunhan_cli::Client) -> bool {
    for _ in 0..100 {
        if client.get("/v1/whoami").await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
