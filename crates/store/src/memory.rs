//! memory backend
