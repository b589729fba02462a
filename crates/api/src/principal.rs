//! Who is calling: the user an API key or a console session proves.

use yunhan_model::Role;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    /// What authenticated the call: the API key's id, or `ses-…` for a console session
    /// (rate limits are kept per this).
    pub key: String,
    pub project: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
