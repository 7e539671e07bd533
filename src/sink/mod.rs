//! Stage 8, sink: owns serialization of events (text transcript, JSON Lines,
//! CSV, the IMSpector log tree) and the run manifest.
