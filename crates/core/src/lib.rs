//! Core of `kubectl mirrord-copy`: target parsing and resolution, copy rules, naming, session
//! lifecycle, scale-down orchestration and gc. See DESIGN.md for the contracts.

pub(crate) mod claims;
pub mod copy;
pub mod error;
pub mod gc;
pub mod identity;
pub mod labels;
pub(crate) mod list;
pub(crate) mod naming;
pub mod resolve;
pub mod scale_down;
pub mod session;
pub mod target;

pub use copy::CopyOptions;
pub use error::Error;
pub use resolve::{resolve, ResolvedTarget, WorkloadRef};
pub use session::{CreateRequest, Progress, ProgressFn, Session, SessionHandle};
pub use target::{TargetKind, TargetRef};
