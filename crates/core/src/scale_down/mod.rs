//! Scale-down orchestration (owned by the scale-down engineer; placeholder so the crate compiles).
