pub mod collect;
pub mod model;
pub mod scrape;
pub mod storage;
#[doc(hidden)]
pub mod testsupport;
