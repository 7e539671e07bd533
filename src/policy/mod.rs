//! Stage 7, policy: flags events as IMSpector's filters would have (badwords,
//! ACL, blocked file transfers). It never blocks and never changes the text.
