//! sqlite backend
