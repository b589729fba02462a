//! Placement groups: anti-affinity for a project's instances (spread over hosts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Members never share a host; a member that cannot be placed is Unschedulable.
    #[default]
    HardAntiAffinity,
    /// Members avoid sharing a host when another host fits.
    SoftAntiAffinity,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupSpec {
    #[serde(default)]
    pub policy: PlacementPolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupStatus {}

/// A "business group": instances spread over hosts for availability.
pub struct PlacementGroup;
impl Kind for PlacementGroup {
    kind_consts!("PlacementGroup", "placement-groups", "pg", Project, admin_write: false);
    type Spec = PlacementGroupSpec;
    type Status = PlacementGroupStatus;
    fn validate(_spec: &PlacementGroupSpec) -> Result<(), ApiError> {
        Ok(())
    }
}
