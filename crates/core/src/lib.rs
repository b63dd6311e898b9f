//! Core of `kubectl mirrord-copy`: target parsing and resolution, copy rules, naming, session
//! lifecycle, scale-down orchestration and gc. See DESIGN.md for the contracts.

pub(crate) mod claims;
pub mod copy;
pub mod error;
pub mod exit_code;
pub mod gc;
pub mod identity;
pub mod labels;
pub(crate) mod list;
pub mod model;
pub(crate) mod naming;
pub mod placeholder;
pub mod resolve;
pub mod scale_down;
pub mod session;
pub mod target;

pub use copy::CopyOptions;
pub use error::Error;
pub use exit_code::ExitCode;
pub use resolve::{resolve, ResolvedTarget, WorkloadRef};
pub use scale_down::ScaleTo;
pub use session::{CreateRequest, Progress, ProgressFn, Session, SessionHandle};
pub use target::{TargetKind, TargetRef};
