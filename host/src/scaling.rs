//! The scaling history (`batch_scaling_history`): every autoscale decision, and the cooldown's
//! source of truth.

use crate::model::Timestamp;
use crate::plugin::ScaleDecision;
use sqlx::MySqlPool;
use std::collections::HashMap;

/// Records decisions made at `now`.
pub async fn record_decisions(
    _pool: &MySqlPool,
    _decisions: &[ScaleDecision],
    _now: Timestamp,
) -> anyhow::Result<()> {
    anyhow::bail!("scaling history is being written (issue 5)")
}

/// Time of the last acted scaling per app guid.
pub async fn last_acted(_pool: &MySqlPool) -> anyhow::Result<HashMap<String, Timestamp>> {
    anyhow::bail!("scaling history is being written (issue 5)")
}
