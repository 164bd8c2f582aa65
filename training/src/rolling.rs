//! The model as operated (daily recalibration, the operated HAR baseline): the code lives in
//! [`volcast_model::operation`], beside inference, because the service runs the daily job itself.

pub use volcast_model::operation::*;
