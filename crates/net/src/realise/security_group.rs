//! Security groups: the host namespace's nft tables (rendered by `nft/security_group.rs`),
//! replaced atomically when anything differs.
use super::{text_hash, Cmd, RealiseError, Realiser, Runner};
use crate::nft;
use crate::plan::HostPlan;

impl<R: Runner> Realiser<R> {
    /// One atomic table replacement when the listing differs from the rendering (or from
    /// what `nft` listed right after this rendering was last applied); returns 1 if so.
    pub(super) fn apply_security_groups(&mut self, plan: &HostPlan) -> Result<usize, RealiseError> {
        let listing = nft::normalize(&self.nft_listing()?);
        let rendered = nft::render(plan);
        let rendered_hash = text_hash(&rendered);
        let nft_same = listing == nft::normalize(&rendered)
            || self.last_nft_listing.as_ref() == Some(&(rendered_hash.clone(), listing.clone()));
        if nft_same && !listing.is_empty() {
            return Ok(0);
        }
        self.run(Cmd::new(self.ns(), &["nft", "-f", "-"]).stdin(nft::render_batch(plan)))?;
        self.last_nft_listing = Some((rendered_hash, nft::normalize(&self.nft_listing()?)));
        Ok(1)
    }
}
