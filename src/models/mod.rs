//! The paper's models, written the tch way: a config struct with `Default`, a
//! constructor taking an `nn::Path`, and `impl ModuleT`. Each model also lists
//! its parameters in a fixed order (`named_parameters`) — the order of the
//! equivalent PyTorch module's `named_parameters()` — so that flat vectors,
//! trajectories and sweeps mean the same thing on both sides.

pub mod conv_maxout;
pub mod kernels;
pub mod lstm;
pub mod mlp;
pub mod mlp_sweep;
pub mod mpdbm;
pub mod network;

pub use conv_maxout::{ConvMaxout, ConvMaxoutConfig};
pub use lstm::{LstmConfig, LstmLanguageModel};
pub use mlp::{Activation, Mlp, MlpConfig};
pub use mpdbm::{Mpdbm, MpdbmConfig};
pub use network::{Measure, Network};
