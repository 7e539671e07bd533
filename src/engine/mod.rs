//! Stage 3, engine: reads batches of frames, decodes link and IP layers,
//! routes each segment to one of a fixed number of shards by its flow key,
//! runs the shards in parallel (rayon) and merges their events into one
//! deterministic order.
