pub mod model;
pub mod storage;
#[doc(hidden)]
pub mod testsupport;
