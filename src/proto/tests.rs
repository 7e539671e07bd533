//! Unit tests of the shared framework: probing, client choice, unit
//! buffering, caps, gaps and the event bookkeeping.
