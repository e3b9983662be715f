pub mod model;
#[doc(hidden)]
pub mod testsupport;
