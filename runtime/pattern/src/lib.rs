//! EventBridge event patterns: parsing, validation and a compiled matcher over all patterns of a bus.
